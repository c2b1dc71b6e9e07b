package revocation

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
)

// This file is a second hostile review of issue 10: each test plays a
// partner, authority or responder that got through (or made the proxy
// misbehave) after the first round of fixes, and failed before its fix.

func defaultRevocationConfig() config.Revocation {
	return config.Revocation{RefreshAt: config.DefaultRefreshAt, Grace: config.DefaultGrace, ClockSkew: config.DefaultClockSkew,
		FetchTimeout: config.DefaultFetchTimeout, CheckInterval: config.DefaultCheckInterval, MaxCRLBytes: config.DefaultMaxCRLBytes,
		MaxOCSPBytes: config.DefaultMaxOCSPBytes, MaxStatusAge: config.DefaultMaxStatusAge, StartupBudget: config.DefaultStartupBudget}
}

// A partner served for more than a day on the same pooled keep-alive
// connections makes no new handshake: only the connection's standing check
// (Binding.Allow) asks about its chain. The certificate must still count as
// in use, so that max_status_age keeps re-asking its status; otherwise it is
// dropped from the background refresh after a day and a revocation is seen
// only at the 7-day CRL's refresh point, days later.
func TestPooledPartnerKeptBusyPastADayStillReasked(t *testing.T) {
	w := getWorld(t)
	p := w.pki
	clk := &clock{t: time.Now()}
	w.srv.Now, w.srv.Validity = clk.now, 7*24*time.Hour
	t.Cleanup(func() { w.srv.Now, w.srv.Validity = nil, 24*time.Hour })
	leaf, err := p.IssueServer(p.OSIServeur, "busy.amc.test", w.o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultRevocationConfig()
	c, _ := newChecker(t, cfg, clk)
	ctx := context.Background()
	rc := c.ForRoute(hard(config.DefaultRevocationSources...))
	chain := []*x509.Certificate{leaf.Cert, p.OSIServeur.Cert}
	// The handshake of the one pooled connection.
	if err := rc.CheckChain(ctx, chain); err != nil {
		t.Fatal(err)
	}
	b := rc.WatchChain(chain, nil)
	defer b.Release()
	// 25 hours of traffic on that connection, the refresh running.
	for end := clk.now().Add(25 * time.Hour); clk.now().Before(end); {
		clk.add(cfg.CheckInterval)
		c.RefreshDue(ctx)
		if err := b.Allow(); err != nil {
			t.Fatalf("good partner refused on its pooled connection after %s: %v", 25*time.Hour-end.Sub(clk.now()), err)
		}
	}
	w.srv.Revoke("ac-serveur", leaf.Cert.SerialNumber)
	revokedAt := clk.now()
	for b.Allow() == nil {
		if clk.now().Sub(revokedAt) > 4*24*time.Hour {
			t.Fatal("revocation not seen on the pooled connection after 4 days")
		}
		clk.add(cfg.CheckInterval)
		c.RefreshDue(ctx)
	}
	detected := clk.now().Sub(revokedAt)
	if bound := cfg.MaxStatusAge + cfg.CheckInterval; detected > bound {
		t.Errorf("revocation seen on the pooled connection after %s, want at most max_status_age + check_interval = %s", detected, bound)
	}
}
