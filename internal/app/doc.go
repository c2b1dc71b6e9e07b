// Package app is roc-proxy's composition root: the command line, and the
// wiring of configuration -> trust store, identity, routes, metrics, logger ->
// servers. Only this package (through cmd/roc-proxy) decides how the process
// starts and stops.
//
// It never exits the process itself: every command returns an error that
// main turns into an exit status.
package app
