package revocation

import (
	"math/big"
)

// serialKey is a certificate serial number as a fixed-size map key, so the
// request path looks up a status without allocating.
type serialKey struct {
	n int
	b [32]byte
}

func keyOfSerial(s *big.Int) (serialKey, bool) {
	var k serialKey
	if s == nil || s.Sign() < 0 || s.BitLen() > 256 {
		return k, false
	}
	k.n = (s.BitLen() + 7) / 8
	s.FillBytes(k.b[32-k.n:])
	return k, true
}
