// Package proxy is the SIH-facing HTTP handler: it matches a request to a
// route by path prefix, forwards it with httputil.ReverseProxy (Rewrite, never
// Director) over the route's mutual-TLS transport, and maps every failure to
// an HTTP status and a small JSON body in one place (errors.go).
//
// It never forwards client-supplied forwarding or identity headers, never
// sends request or response bodies to the logs, and never reaches a host
// other than its routes' upstreams.
package proxy
