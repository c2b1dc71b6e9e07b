// Package app is roc-proxy's composition root: the table of commands
// (app.go; each command package declares its own entries, app only lists
// them), serve and config check, and the wiring of configuration -> trust
// store, identity, routes, metrics, logger -> servers (Build), with the
// reload hook-up and graceful shutdown (Serve). Only this package (through
// cmd/roc-proxy) decides how the process starts and stops. The offline
// commands (internal/cli/certcmd, auditcmd, doctorcmd) and the demo
// (internal/cli/democmd, given Build as a function) live in packages of
// their own that never import this one.
//
// It never exits the process itself: every command returns an error that
// main turns into an exit status.
package app
