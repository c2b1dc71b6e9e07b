package helm_test

import "software.sslmate.com/src/go-pkcs12"

func pkcs12Modern() *pkcs12.Encoder { return pkcs12.Modern }
