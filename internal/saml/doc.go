// Package saml builds, signs and injects the SAML 2.0 assertions of indirect
// authentication: the ROC legal-person token and the DMP VIHF, signed with
// the establishment's ORG_SIGN certificate (exclusive c14n with the
// InclusiveNamespaces PrefixList "ds saml #default xsi", RSA-SHA256,
// Signature right after Issuer) and placed in the SOAP WS-Security header.
//
// It never signs for a request it refused (not SOAP, a DTD, an assertion or
// a signed Security header already present, missing per-request values),
// never re-serializes the SIH's envelope (the assertion is spliced into the
// original bytes), and never logs a whole token.
package saml
