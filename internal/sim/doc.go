// Package sim runs the simulated world around roc-proxy, for tests, the
// demo and the benchmark: real servers on loopback, never mocks.
//
//   - Partners: real HTTPS servers that require and verify client
//     certificates and check the SAML tokens, as the AMC side does. The AMC
//     directory answers the SOAP 1.1 "search" operation of the public
//     city-practice sample; the AMC service answers an IDB-style (rights
//     check) request; a DMP endpoint takes a VIHF. The AMC services' real
//     message formats are not public: the service's namespace and elements
//     are this simulator's.
//   - Authorities: a CRL server and OCSP responder (complete and delta
//     CRLs, delegated responders) with fault modes (down, slow, garbage).
//   - The hospital's network: a forward proxy (CONNECT and absolute form,
//     Basic credentials, its own name resolution) that can refuse, hang,
//     close, answer garbage or inspect TLS; and a syslog collector (RFC
//     5424, octet-counting framing) strict about what it reads.
//
// It must never be used to serve real traffic, and never listens beyond
// loopback.
package sim
