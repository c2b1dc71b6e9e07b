package config

import "embed"

// PublicBundles are the public IGC-Santé chains (production and test),
// embedded so that the certificate tools work without any file.
//
//go:embed bundles/*.pem
var PublicBundles embed.FS
