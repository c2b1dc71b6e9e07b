// Package auditcmd is roc-proxy's audit tools, for the security team:
// audit verify (each chain's links, its start and end, its signers
// anchored to the establishment, a copy kept elsewhere), audit show (the
// signed-token records that match, their stored assertions re-verified)
// and audit export (the chains as a tar archive or JSON lines, from the
// binary alone).
//
// It reads audit files through internal/audit and never writes them; it
// never exits (errors go back to internal/app, which main turns into exit
// statuses).
package auditcmd
