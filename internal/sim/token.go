package sim

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/beevik/etree"

	"github.com/roc-proxy/roc-proxy/internal/saml"
)

// HeaderTokenSubject echoes the NameID of the token a simulator accepted.
const HeaderTokenSubject = "X-Sim-Token-Subject"

// checkToken verifies the envelope's assertion as a partner would: one
// assertion, signed under the configured roots, inside its validity window,
// with the attributes required (each must be present and non-empty).
func checkToken(envelope []byte, o Options, required []string) (nameID string, err error) {
	now := time.Now()
	a, err := saml.VerifyEnvelope(envelope, o.TokenRoots, o.TokenIntermediates, now)
	if err != nil {
		return "", err
	}
	if err := checkWindow(a, now); err != nil {
		return "", err
	}
	attrs := map[string]string{}
	for _, at := range a.FindElements("AttributeStatement/Attribute") {
		v := at.FindElement("AttributeValue")
		if v == nil {
			continue
		}
		text := strings.TrimSpace(v.Text())
		if c := v.ChildElements(); len(c) > 0 {
			text = c[0].SelectAttrValue("code", "")
		}
		attrs[at.SelectAttrValue("Name", "")] = text
	}
	if attrs[saml.AttrStructureID] == "" {
		return "", errors.New("attribut Identifiant_Structure absent")
	}
	var missing []string
	for _, name := range required {
		if attrs[name] == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("attributs absents: %s", strings.Join(missing, ", "))
	}
	if id := a.FindElement("Subject/NameID"); id != nil {
		return id.Text(), nil
	}
	return "", errors.New("NameID absent")
}

func checkWindow(a *etree.Element, now time.Time) error {
	c := a.FindElement("Conditions")
	if c == nil {
		return nil
	}
	const skew = time.Minute
	if nb, err := time.Parse(time.RFC3339, c.SelectAttrValue("NotBefore", "")); err == nil && now.Add(skew).Before(nb) {
		return errors.New("jeton pas encore valide")
	}
	if na, err := time.Parse(time.RFC3339, c.SelectAttrValue("NotOnOrAfter", "")); err == nil && !now.Add(-skew).Before(na) {
		return errors.New("jeton expiré")
	}
	return nil
}
