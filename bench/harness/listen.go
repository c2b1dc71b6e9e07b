package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The contenders get their SIH listener without a port reserved, closed
// and handed over (another process may take it in between): roc-proxy
// and the floor listen on 127.0.0.1:0 and the harness reads the address
// they bound from the kernel (their listening sockets in /proc); nginx,
// which takes no port 0, is handed the harness's own listener (file
// descriptor 3 and NGINX="3;", the inheritance nginx's binary upgrade
// uses).

// listeningAddrs lists the TCP addresses process pid listens on: its
// socket descriptors matched with /proc/net/tcp and tcp6.
func listeningAddrs(pid int) ([]string, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			if addr, err := procAddr(fields[1]); err == nil {
				out = append(out, addr.String())
			}
		}
		f.Close()
	}
	return out, nil
}

// procAddr decodes /proc/net/tcp's "0100007F:1F90": the address as the
// kernel holds it (32-bit words in host order, little-endian here), the
// port in hexadecimal.
func procAddr(s string) (netip.AddrPort, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(hexIP)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// sihAddr is the SIH address a roc-proxy (withAdmin) or floor process
// bound: of its listening addresses, the one that is not the admin
// endpoint (which answers /metrics with roc-proxy's series). "" while the
// process has not bound them all yet.
func sihAddr(pid int, withAdmin bool) string {
	addrs, err := listeningAddrs(pid)
	if err != nil {
		return ""
	}
	want := 1
	if withAdmin {
		want = 2
	}
	if len(addrs) != want {
		return ""
	}
	client := &http.Client{Timeout: time.Second}
	var sih []string
	admins := 0
	for _, a := range addrs {
		if withAdmin && isAdmin(client, a) {
			admins++
		} else {
			sih = append(sih, a)
		}
	}
	if len(sih) != 1 || (withAdmin && admins != 1) {
		return ""
	}
	return sih[0]
}

func isAdmin(client *http.Client, addr string) bool {
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode == http.StatusOK && strings.Contains(string(b), "roc_proxy_")
}

// inheritedListener is a listener on 127.0.0.1:0 for a child process
// (ExtraFiles[0], descriptor 3), and its address.
func inheritedListener() (*os.File, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	defer ln.Close() // the descriptor below is a duplicate
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, "", err
	}
	return f, ln.Addr().String(), nil
}
