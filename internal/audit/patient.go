package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
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

// MaxPatientKeyBytes bounds a patient_id_key file: a key is small, and a
// huge file (or an endless one) is a mistake, not a key.
const MaxPatientKeyBytes = 4096

// ReadPatientKey reads an audit.patient_id_key file: its bytes, a final
// newline removed (openssl rand -hex 32 > FILE writes one), at least
// MinPatientKeyBytes and at most MaxPatientKeyBytes of them, from a
// regular file (a FIFO would hang the start, a device never end), and
// not guessable (zero bytes, one character or a short pattern repeated:
// an HMAC under a known key is reversed like the plain hash). The same key
// gives the same value on every replica, so that one search covers every
// chain. Messages name the file, never the key.
func ReadPatientKey(path string) ([]byte, error) {
	key, guessable, err := readPatientKey(path)
	return refuseGuessable(path, key, guessable, err)
}

// CheckPatientKey holds the bytes of a patient_id_key file read elsewhere
// (within a size limit) to ReadPatientKey's rules: the final newline
// removed, MinPatientKeyBytes to MaxPatientKeyBytes of them, not
// guessable.
func CheckPatientKey(path string, data []byte) ([]byte, error) {
	key, guessable, err := patientKeyRules(path, data)
	return refuseGuessable(path, key, guessable, err)
}

func refuseGuessable(path string, key []byte, guessable string, err error) ([]byte, error) {
	if err == nil && guessable != "" {
		err = fmt.Errorf("%s is a guessable key (%s): a patient_id_key must be random (openssl rand -hex 32 > %s)", path, guessable, path)
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

// ReadPastPatientKey reads a key records were keyed with, for a search
// (audit show --patient-id-key): a guessable key that an older roc-proxy
// accepted still finds its records; warning then says so.
func ReadPastPatientKey(path string) (key []byte, warning string, err error) {
	key, guessable, err := readPatientKey(path)
	if err != nil {
		return nil, "", err
	}
	if guessable != "" {
		warning = fmt.Sprintf("%s is a guessable key (%s): whoever holds the records can match them as if they were not keyed", path, guessable)
	}
	return key, warning, nil
}

// readPatientKey is ReadPatientKey that says why a key is guessable
// instead of refusing it.
func readPatientKey(path string) (key []byte, guessable string, err error) {
	fi, err := os.Stat(path) // through the symlinks of a mounted Secret
	if err != nil {
		return nil, "", err
	}
	if !fi.Mode().IsRegular() {
		return nil, "", fmt.Errorf("%s is not a regular file (%s): a patient_id_key is a file of random bytes (openssl rand -hex 32 > FILE)", path, fi.Mode().Type())
	}
	if fi.Size() > MaxPatientKeyBytes+2 {
		return nil, "", fmt.Errorf("%s holds %d bytes: a patient_id_key holds %d bytes at most (openssl rand -hex 32 > FILE)", path, fi.Size(), MaxPatientKeyBytes)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPatientKeyBytes+3))
	if err != nil {
		return nil, "", err
	}
	return patientKeyRules(path, data)
}

// patientKeyRules is what a key file's bytes must be, and says why a key
// is guessable instead of refusing it.
func patientKeyRules(path string, data []byte) (key []byte, guessable string, err error) {
	key = []byte(strings.TrimRight(string(data), "\r\n"))
	switch {
	case len(key) > MaxPatientKeyBytes:
		return nil, "", fmt.Errorf("%s holds more than %d bytes: a patient_id_key holds %d bytes at most (openssl rand -hex 32 > FILE)", path, MaxPatientKeyBytes, MaxPatientKeyBytes)
	case len(key) < MinPatientKeyBytes:
		return nil, "", fmt.Errorf("%s holds %d bytes: a patient_id_key needs at least %d random bytes (openssl rand -hex 32 > %s)", path, len(key), MinPatientKeyBytes, path)
	}
	return key, guessableKey(key), nil
}

// guessableKey says why key is no random key ("" when nothing shows it):
// fewer than 8 different bytes (zero bytes, one character repeated, a
// short word), or a pattern of at most 16 bytes repeated. 64 random hex
// digits show at least 8 different ones but for odds below 10^-7.
func guessableKey(key []byte) string {
	var seen [256]bool
	distinct := 0
	for _, b := range key {
		if !seen[b] {
			seen[b] = true
			distinct++
		}
	}
	if distinct < 8 {
		return fmt.Sprintf("%d different bytes in %d", distinct, len(key))
	}
	for period := 1; period <= 16 && 2*period <= len(key); period++ {
		repeated := true
		for i := period; i < len(key) && repeated; i++ {
			repeated = key[i] == key[i-period]
		}
		if repeated {
			return fmt.Sprintf("a pattern of %d bytes repeated", period)
		}
	}
	return ""
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
