// Command roc-proxy is the establishment-side proxy that performs mutual TLS
// with the ORG_AUTH_CLI certificate towards ROC (AMC) and DMP partners.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/roc-proxy/roc-proxy/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := app.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, app.ErrUsage) {
			fmt.Fprintln(os.Stderr, "roc-proxy:", err)
		}
		os.Exit(1)
	}
}
