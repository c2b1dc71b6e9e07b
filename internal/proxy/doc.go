// Package proxy is the SIH-facing HTTP handler and the routes' client to
// their partners (docs/architecture.md, "The path of a request").
//
// It owns: matching a request to a route (longest path prefix on whole
// segments), the checks of who may call (client address, SIH client
// certificate, a dynamic route's allowed destinations), the request's
// bounds (canonical path, methods, bodies held whole under the route's
// limits and one memory budget shared by all requests), the hygiene of the
// headers forwarded, request ids, the access log and the request metrics;
// Upstream, the pooled mutual-TLS client that carries each exchange on the
// request's goroutine (httputil.ReverseProxy with Rewrite, never Director,
// in front of it); and errors.go, the one place where a failure becomes an
// HTTP status and a small JSON body (docs/sih-integration.md, "Errors").
//
// It never forwards a header a client could use to speak for someone else
// (Forwarded, X-Forwarded-*, client-certificate headers, X-Roc-* in any
// spelling, the SIH's own token header), never reaches a host other than a
// route's upstream or a destination its dynamic hosts allow, never sends a
// request on a pooled connection whose standing revocation check refuses
// it, never sends the SIH a status it did not decide (a client gone gets
// nothing, a 1xx is not final), never holds more body memory than
// server.max_body_memory, and never writes bodies, keys or whole tokens to
// the logs. Internal detail (certificate subjects, Go errors) goes to the
// log, never to the client.
package proxy
