package reload

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
)

// followedFiles lists the files a reload depends on: the identity and
// listener certificate files, and the trust bundles' paths; bundleDirs are
// the bundles that are folders.
func followedFiles(cfg *config.Config) (files, bundleDirs []string) {
	for _, s := range identitySources(cfg) { // the sources digests hashes
		files = append(files, sourceFiles(s.src)...)
	}
	if t := cfg.Listen.TLS; t != nil && t.ACME == nil {
		files = append(files, sourceFiles(listenSource(t))...)
	}
	for _, b := range cfg.TrustBundles {
		for _, path := range b.Paths {
			if fi, err := os.Stat(path); err == nil && fi.IsDir() {
				bundleDirs = append(bundleDirs, path)
			}
			files = append(files, path)
		}
	}
	return files, bundleDirs
}

// watchedDirs lists the folders holding the files a reload depends on (a
// bundle that is a folder is watched itself). Folders, not files:
// Kubernetes replaces a mounted Secret by swapping the folder's "..data"
// symlink, which a watch on the file would never see.
func watchedDirs(cfg *config.Config) []string {
	files, bundleDirs := followedFiles(cfg)
	set := map[string]bool{}
	for _, d := range bundleDirs {
		set[d] = true
	}
	for _, f := range files {
		set[filepath.Dir(f)] = true
	}
	dirs := make([]string, 0, len(set))
	for d := range set {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	return dirs
}

// relevantFiles lists what a change in the watched folders must be about
// to matter: the certificate and bundle files, and any file of a bundle
// that is a folder.
func relevantFiles(cfg *config.Config) (files, folders map[string]bool) {
	list, bundleDirs := followedFiles(cfg)
	files, folders = map[string]bool{}, map[string]bool{}
	for _, d := range bundleDirs {
		folders[filepath.Clean(d)] = true
	}
	for _, f := range list {
		files[filepath.Clean(f)] = true
	}
	return files, folders
}

// fileWatch turns file-system events in the watched folders into a prompt
// reload check. The periodic check stays: it covers file systems without
// notifications (some network volumes) and a watch that failed.
type fileWatch struct {
	w       *fsnotify.Watcher
	watched map[string]bool
	log     *zap.Logger
	// files and folders: see relevantFiles.
	files, folders map[string]bool
}

// relevant reports whether an event in a watched folder may concern the
// certificates or bundles: one of their files, a file of a bundle folder,
// or the kubelet's "..data" swap of a mounted Secret. Other writes in the
// same folders (a log file kept there, say) do not wake the reload.
func (fw *fileWatch) relevant(name string) bool {
	return fw.files[name] || fw.folders[filepath.Dir(name)] || strings.HasPrefix(filepath.Base(name), "..")
}

// follow makes the relevant files those of cfg.
func (fw *fileWatch) follow(cfg *config.Config) {
	if fw != nil {
		fw.files, fw.folders = relevantFiles(cfg)
	}
}

// newFileWatch watches dirs; with no notification support it returns nil
// and the periodic check does the work alone.
func newFileWatch(dirs []string, log *zap.Logger) *fileWatch {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("file notifications unavailable: renewed files are found by the periodic check only", zap.Error(err))
		return nil
	}
	fw := &fileWatch{w: w, watched: map[string]bool{}, log: log}
	fw.set(dirs)
	return fw
}

// set makes the watched folders exactly dirs (after a configuration reload).
func (fw *fileWatch) set(dirs []string) {
	if fw == nil {
		return
	}
	want := map[string]bool{}
	for _, d := range dirs {
		want[d] = true
		if fw.watched[d] {
			continue
		}
		if err := fw.w.Add(d); err != nil {
			fw.log.Warn("cannot watch folder: its changes are found by the periodic check", zap.String("folder", d), zap.Error(err))
			continue
		}
		fw.watched[d] = true
	}
	for d := range fw.watched {
		if !want[d] {
			_ = fw.w.Remove(d)
			delete(fw.watched, d)
		}
	}
}

// events is nil (never ready) when there is no watch.
func (fw *fileWatch) events() (<-chan fsnotify.Event, <-chan error) {
	if fw == nil {
		return nil, nil
	}
	return fw.w.Events, fw.w.Errors
}

func (fw *fileWatch) close() {
	if fw != nil {
		_ = fw.w.Close()
	}
}
