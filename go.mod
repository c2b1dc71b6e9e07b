module github.com/roc-proxy/roc-proxy

go 1.26.8

require (
	go.yaml.in/yaml/v3 v3.0.6
	software.sslmate.com/src/go-pkcs12 v0.7.4
)

require golang.org/x/crypto v0.58.0 // indirect
