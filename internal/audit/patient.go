package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// The patient's INS in records (audit.patient_id). An INS is 13
// structured characters and a 2-digit key: about 10^10 values, which a
// laptop hashes in minutes, so a plain SHA-256 of it is reversed by
// anyone holding the records (a SIEM copy, an export, a backup). Keyed
// with audit.patient_id_key (HMAC-SHA-256, the key kept apart from the
// records), it can be matched only by who holds the key.
const (
	// AttrPatientINS holds the INS in clear (patient_id: keep).
	AttrPatientINS = "patient_ins"
	// AttrPatientSHA256 holds the plain SHA-256 (hex) of the INS
	// (patient_id: hash without a key): pseudonymisation only.
	AttrPatientSHA256 = "patient_ins_sha256"
	// AttrPatientHMAC holds the HMAC-SHA-256 (hex) of the INS under
	// audit.patient_id_key.
	AttrPatientHMAC = "patient_ins_hmac"
)

// MinPatientKeyBytes is the least a patient_id_key file must hold.
const MinPatientKeyBytes = 32

// PatientHash is the attribute a record keeps of ins with patient_id:
// hash: its HMAC-SHA-256 under key, or without a key its SHA-256.
func PatientHash(ins string, key []byte) (attr, value string) {
	if len(key) == 0 {
		h := sha256.Sum256([]byte(ins))
		return AttrPatientSHA256, hex.EncodeToString(h[:])
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ins))
	return AttrPatientHMAC, hex.EncodeToString(m.Sum(nil))
}

// ReadPatientKey reads an audit.patient_id_key file: its bytes, a final
// newline removed (openssl rand -hex 32 > FILE writes one), at least
// MinPatientKeyBytes of them. The same key gives the same value on every
// replica, so that one search covers every chain.
func ReadPatientKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key := []byte(strings.TrimRight(string(data), "\r\n"))
	if len(key) < MinPatientKeyBytes {
		return nil, fmt.Errorf("%s holds %d bytes: a patient_id_key needs at least %d random bytes (openssl rand -hex 32 > %s)", path, len(key), MinPatientKeyBytes, path)
	}
	return key, nil
}

// matchesPatient reports whether r's attributes name the patient ins: in
// clear, hashed, or keyed with one of keys.
func matchesPatient(r *Record, ins string, keys [][]byte) bool {
	if r.Attributes == nil {
		return false
	}
	if v, ok := r.Attributes[AttrPatientINS]; ok && v == ins {
		return true
	}
	if v, ok := r.Attributes[AttrPatientSHA256]; ok {
		if _, h := PatientHash(ins, nil); hmac.Equal([]byte(v), []byte(h)) {
			return true
		}
	}
	if v, ok := r.Attributes[AttrPatientHMAC]; ok {
		for _, k := range keys {
			if _, h := PatientHash(ins, k); hmac.Equal([]byte(v), []byte(h)) {
				return true
			}
		}
	}
	return false
}
