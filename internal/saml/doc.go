// Package saml builds, signs and injects the SAML 2.0 assertions of indirect
// authentication: the ROC legal-person token and the DMP VIHF, signed with
// the establishment's ORG_SIGN certificate (exclusive c14n with the
// InclusiveNamespaces PrefixList "ds saml #default xsi", RSA-SHA256,
// Signature right after Issuer) and placed in the SOAP WS-Security header;
// and it verifies partners' signed answers (ResponsePolicy).
//
// It never signs for a request it refused (not namespace-well-formed XML,
// not a SOAP envelope, a DTD, an assertion or a credential already in the
// Security header, missing per-request values), never re-serializes the
// SIH's envelope (the assertion is spliced into the original bytes; the
// envelope is read by its own scanner, held to encoding/xml by a fuzz
// target), never re-serializes signed XML through encoding/xml when it
// verifies an answer, and never logs a whole token.
package saml
