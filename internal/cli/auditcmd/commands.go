package auditcmd

import "github.com/roc-proxy/roc-proxy/internal/cli/cmdline"

// Command is the entry of roc-proxy's table of commands (internal/app)
// for "audit" and its subcommands.
var Command = cmdline.Command{Name: "audit", Synopsis: "COMMAND ...", Summary: "verify, show or export the signed-token audit log", Usage: auditUsage,
	Subcommands: []cmdline.Command{
		{Name: "verify", Run: cmdline.Offline(Verify)},
		{Name: "show", Run: cmdline.Offline(cmdAuditShow)},
		{Name: "export", Run: cmdline.Offline(cmdAuditExport)},
	}}
