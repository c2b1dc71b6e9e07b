// Package reload applies, while roc-proxy serves, the changes of the files
// it runs on: renewed certificates (ORG_AUTH_CLI, ORG_SIGN, the audit
// checkpoint key, the SIH listener's), changed trust bundles, and the
// configuration file when SIGHUP asks for it. It watches the folders that
// hold them (where a Kubernetes Secret's "..data" swap shows), checks them
// on a period too, and applies a configuration whole or not at all:
// sections only a restart applies are refused with their names.
//
// Its goroutine (Run) owns the running configuration, its trust bundles,
// the certificates in service and the digests of their files; nothing
// else reads them. It never builds routes, TLS configurations or signers
// itself: the composition root does, through Runtime, and swaps them in
// atomically. A broken file never replaces working material.
package reload
