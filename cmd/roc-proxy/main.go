// Command roc-proxy is the establishment-side proxy that performs mutual TLS
// with the ORG_AUTH_CLI certificate towards ROC (AMC) and DMP partners.
//
// Exit status: 0 done (or help printed), 1 failed, 2 wrong command line, 78
// (EX_CONFIG) serve's configuration or a file it names is wrong.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/roc-proxy/roc-proxy/internal/app"
	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := app.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	code := cmdline.ExitStatus(err)
	if code != 0 && !errors.Is(err, app.ErrUsage) { // a usage error was printed with the usage
		fmt.Fprintln(os.Stderr, "roc-proxy:", err)
	}
	os.Exit(code)
}
