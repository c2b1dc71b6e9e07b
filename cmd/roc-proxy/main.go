// Command roc-proxy is the establishment-side proxy that performs mutual TLS
// with the ORG_AUTH_CLI certificate towards ROC (AMC) and DMP partners.
//
// Exit status: 0 done (or help printed), 1 failed, 2 wrong command line.
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
	switch {
	case errors.Is(err, app.ErrUsage):
		os.Exit(2) // what is wrong was printed with the usage
	case err != nil:
		fmt.Fprintln(os.Stderr, "roc-proxy:", err)
		os.Exit(1)
	}
}
