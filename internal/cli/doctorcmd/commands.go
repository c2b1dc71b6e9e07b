package doctorcmd

import "github.com/roc-proxy/roc-proxy/internal/cli/cmdline"

// Command is the entry of roc-proxy's table of commands (internal/app)
// for "doctor".
var Command = cmdline.Command{Name: "doctor", Synopsis: "--config FILE", Summary: "try every partner and revocation URL (install day)", Run: cmdDoctor}
