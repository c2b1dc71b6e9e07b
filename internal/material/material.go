// Package material loads and checks the certificate material a
// configuration names: the trust bundles, the establishment's identity
// (ORG_AUTH_CLI, ORG_SIGN), the audit checkpoint key and the SIH listener's
// certificate and client authorities, and the key of the patient-id hash
// (audit.patient_id_key). config check stops there; Build,
// a reload and doctor start from it.
//
// It reads files only: it never connects (no revocation fetch, no
// partner), keeps nothing, and never logs a password or a key.
package material

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/audit"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
	"github.com/roc-proxy/roc-proxy/internal/listener"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// Material is the certificate material a configuration names, loaded and
// checked; config check stops there.
type Material struct {
	Store *trust.Store
	Auth  *mtls.Identity
	Sign  *mtls.Identity // nil when no route signs
	// Checkpoint signs the audit checkpoints (default: Sign).
	Checkpoint *mtls.Identity
	// ListenCert and ClientCAs are the SIH listener's TLS (listen.tls).
	ListenCert *tls.Certificate
	ClientCAs  *x509.CertPool
	// PatientKey keys the patient's INS hash (audit.patient_id_key).
	PatientKey []byte
}

// Options are what Load takes from outside the configuration.
type Options struct {
	Now    func() time.Time    // validity checks; default time.Now
	Getenv func(string) string // password_env; default os.Getenv
}

// Load reads the trust bundles, the establishment's identity (ORG_AUTH_CLI,
// ORG_SIGN), the audit checkpoint key and the SIH listener's TLS files,
// and checks each certificate's role, validity and chain, and that every
// revocation.issuers[].subject names a known authority.
func Load(cfg *config.Config, d Options) (*Material, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Getenv == nil {
		d.Getenv = os.Getenv
	}
	store, err := trust.LoadStore(cfg.TrustBundles)
	if err != nil {
		return nil, err
	}
	auth, err := mtls.LoadIdentity(cfg.Identity.Auth, mtls.LoadOptions{
		Path: "identity.auth", Role: mtls.RoleAuthClient, Store: store, Now: d.Now, Getenv: d.Getenv,
	})
	if err != nil {
		return nil, err
	}
	mat := &Material{Store: store, Auth: auth}
	if cfg.Identity.Sign != nil {
		mat.Sign, err = mtls.LoadIdentity(cfg.Identity.Sign, mtls.LoadOptions{
			Path: "identity.sign", Role: mtls.RoleSign, Store: store, Now: d.Now, Getenv: d.Getenv,
		})
		if err != nil {
			return nil, err
		}
	}
	if cfg.Listen.TLS != nil {
		if mat.ListenCert, mat.ClientCAs, err = listener.LoadTLS(cfg.Listen.TLS); err != nil {
			return nil, err
		}
	}
	if err := checkRevocationIssuers(cfg, mat); err != nil {
		return nil, err
	}
	if mat.PatientKey, err = PatientKey(cfg); err != nil {
		return nil, err
	}
	mat.Checkpoint = mat.Sign
	if cfg.Audit.CheckpointKey != nil {
		mat.Checkpoint, err = mtls.LoadIdentity(cfg.Audit.CheckpointKey, mtls.LoadOptions{
			Path: "audit.checkpoint_key", Role: mtls.RoleSign, Store: store, Now: d.Now, Getenv: d.Getenv,
		})
		if err != nil {
			return nil, err
		}
	}
	return mat, nil
}

// checkRevocationIssuers makes sure each revocation.issuers[].subject names
// a certificate authority of the trust bundles or of the identity chains
// (in either DN order): one that names none would be silently unused.
func checkRevocationIssuers(cfg *config.Config, mat *Material) error {
	cas := mat.Store.Authorities()
	for _, id := range []*mtls.Identity{mat.Auth, mat.Sign} {
		if id != nil && len(id.Chain) > 1 {
			cas = append(cas, id.Chain[1:]...)
		}
	}
	var errs []error
	for i, is := range cfg.Revocation.Issuers {
		found := false
		for _, ca := range cas {
			if config.DNMatches(is.Subject, ca.RawSubject) {
				found = true
				break
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("revocation.issuers[%d].subject: %q names no certificate authority of the trust bundles or of the identity chains", i, is.Subject))
		}
	}
	return errors.Join(errs...)
}

// PatientKey reads audit.patient_id_key (nil when not configured).
func PatientKey(cfg *config.Config) ([]byte, error) {
	if cfg.Audit.PatientIDKey == "" {
		return nil, nil
	}
	// Read within boundedfile.Password's limit, as every secret file a
	// configuration names, then held to the rules audit show applies.
	path := cfg.Audit.PatientIDKey
	data, err := boundedfile.Read(path, boundedfile.Password)
	if err != nil {
		return nil, fmt.Errorf("audit.patient_id_key: %w", err)
	}
	key, err := audit.CheckPatientKey(path, data)
	if err != nil {
		return nil, fmt.Errorf("audit.patient_id_key: %w", err)
	}
	return key, nil
}

// PlainPatientHash says what patient_id: hash without a key is, when a
// route may record a patient's INS ("" otherwise).
func PlainPatientHash(cfg *config.Config) string {
	if cfg.Audit.PatientID != config.PatientIDHash || cfg.Audit.PatientIDKey != "" {
		return ""
	}
	for _, r := range cfg.Routes {
		if r != nil && r.Token != nil {
			return "audit.patient_id: hash without audit.patient_id_key writes a plain SHA-256 of the patient's INS, which anyone holding the records (a SIEM copy, an export) reverses by trying every INS: pseudonymisation only, not protection; set audit.patient_id_key (HMAC-SHA-256 under a key kept apart from the records)"
		}
	}
	return ""
}
