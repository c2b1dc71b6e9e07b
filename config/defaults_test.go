package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Configurations that leave out every key that has a default, with the
// sections whose defaults apply only when present (a syslog collector, a
// token of each placement, a dynamic route). Their defaulted keys are the
// code's defaults.
var defaultsConfigs = []string{`
listen: {tls: {acme: {directory: "https://acme.example/dir"}}}
audit: {ship: {syslog: {address: "siem.example:6514"}}}
routes:
  - name: a
    dynamic: {hosts: [a.example]}
    token: {profile: vihf}
`, `
routes:
  - name: b
    upstream: https://b.example/
    token: {profile: roc, placement: http-header}
`}

// codeDefaults are the values applyDefaults gives to keys the file left
// out, by key (routes[].timeouts.total), and the Go type of every key.
func codeDefaults(t *testing.T) (defaults map[string]reflect.Value, types map[string]reflect.Type) {
	t.Helper()
	defaults, types = map[string]reflect.Value{}, map[string]reflect.Type{}
	keyTypes(reflect.TypeOf(Config{}), "", types)
	for _, doc := range defaultsConfigs {
		var raw, def Config
		if err := yaml.Unmarshal([]byte(doc), &raw); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal([]byte(doc), &def); err != nil {
			t.Fatal(err)
		}
		def.applyDefaults()
		walkDefaults(t, reflect.ValueOf(raw), reflect.ValueOf(def), "", defaults)
	}
	if len(defaults) < 60 {
		t.Fatalf("only %d defaults found: the walk is broken", len(defaults))
	}
	return defaults, types
}

var textValueType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// section is the struct a key of type t holds keys under, or nil for a
// key that takes a value.
func section(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(textValueType) {
		return t
	}
	return nil
}

// yamlFields calls fn with each field of struct type t and its key (""
// for an inline field).
func yamlFields(t reflect.Type, fn func(i int, f reflect.StructField, key string)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if opts == "inline" {
			name = ""
		}
		fn(i, f, name)
	}
}

func join(prefix, key string) string {
	if prefix == "" || key == "" {
		return prefix + key
	}
	return prefix + "." + key
}

// keyTypes records the Go type of every key under struct type t.
func keyTypes(t reflect.Type, prefix string, types map[string]reflect.Type) {
	yamlFields(t, func(_ int, f reflect.StructField, key string) {
		path := join(prefix, key)
		ft := f.Type
		switch {
		case section(ft) != nil:
			keyTypes(section(ft), path, types)
		case (ft.Kind() == reflect.Slice) && section(ft.Elem()) != nil:
			keyTypes(section(ft.Elem()), path+"[]", types)
		case ft.Kind() == reflect.Map && section(ft.Elem()) != nil:
			keyTypes(section(ft.Elem()), path+".<name>", types)
		default:
			types[path] = ft
		}
	})
}

// walkDefaults records, under each key, the value def holds where raw
// (the same file before applyDefaults) holds none.
func walkDefaults(t *testing.T, raw, def reflect.Value, prefix string, out map[string]reflect.Value) {
	for def.Kind() == reflect.Pointer {
		if def.IsNil() {
			return
		}
		def = def.Elem()
		if raw.IsNil() {
			raw = reflect.Zero(def.Type())
		} else {
			raw = raw.Elem()
		}
	}
	yamlFields(def.Type(), func(i int, f reflect.StructField, key string) {
		path := join(prefix, key)
		r, d := raw.Field(i), def.Field(i)
		switch {
		case section(f.Type) != nil:
			walkDefaults(t, r, d, path, out)
		case f.Type.Kind() == reflect.Slice && section(f.Type.Elem()) != nil:
			for k := 0; k < d.Len(); k++ {
				walkDefaults(t, r.Index(k), d.Index(k), path+"[]", out)
			}
		case f.Type.Kind() == reflect.Map && section(f.Type.Elem()) != nil:
		case r.IsZero() && !d.IsZero():
			if prev, seen := out[path]; seen && !reflect.DeepEqual(prev.Interface(), d.Interface()) {
				t.Errorf("%s has two defaults, %s and %s: the test's configurations need telling apart", path, show(prev), show(d))
			}
			out[path] = d
		}
	})
}

func show(v reflect.Value) string {
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return fmt.Sprintf("%v", v.Interface())
}

// decodeAs decodes a YAML value written in the documentation or the
// example into a value of type t, as Load would.
func decodeAs(node *yaml.Node, t reflect.Type) (reflect.Value, error) {
	v := reflect.New(t)
	if err := node.Decode(v.Interface()); err != nil {
		return v, err
	}
	return v.Elem(), nil
}

var docRow = regexp.MustCompile("^\\| `([^`]+)` \\| ([^|]*) \\|")
var literal = regexp.MustCompile("^`([^`]+)`$")

// TestDefaultsDocumented holds docs/configuration.md's default column to
// the code's defaults, both ways: a default the table states must be the
// code's (a key the code leaves empty is the zero value), and every key
// the code gives a default to must state it (as a value, or as the key
// it follows, e.g. `server.max_body_bytes`).
func TestDefaultsDocumented(t *testing.T) {
	defaults, types := codeDefaults(t)
	data, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	stated := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		m := docRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key, cell := m[1], strings.TrimSpace(m[2])
		typ, isKey := types[key]
		lit := literal.FindStringSubmatch(cell)
		if !isKey || lit == nil {
			if _, has := defaults[key]; has && isKey {
				t.Errorf("docs/configuration.md: %s: default %q, the code's is %s (write it as `value`)", key, cell, show(defaults[key]))
				stated[key] = true
			}
			continue
		}
		stated[key] = true
		code, has := defaults[key]
		if !has {
			code = reflect.Zero(typ)
		}
		var doc reflect.Value
		if ref, isRef := types[lit[1]]; isRef {
			// The default of another key (routes' limits follow the
			// server's).
			if doc = defaults[lit[1]]; !doc.IsValid() {
				doc = reflect.Zero(ref)
			}
		} else if doc, err = decodeAs(&yaml.Node{Kind: yaml.ScalarNode, Value: lit[1]}, typ); err != nil || strings.HasPrefix(lit[1], "[") {
			var n yaml.Node
			if yaml.Unmarshal([]byte(lit[1]), &n) != nil || len(n.Content) != 1 {
				t.Errorf("docs/configuration.md: %s: default `%s` is not a value", key, lit[1])
				continue
			}
			if doc, err = decodeAs(n.Content[0], typ); err != nil {
				t.Errorf("docs/configuration.md: %s: default `%s` is not a %s: %v", key, lit[1], typ, err)
				continue
			}
		}
		if !reflect.DeepEqual(doc.Interface(), code.Interface()) {
			t.Errorf("docs/configuration.md: %s: default `%s`, the code's (config/load.go) is %s", key, lit[1], show(code))
		}
	}
	var missing []string
	for key := range defaults {
		if !stated[key] {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	for _, key := range missing {
		t.Errorf("docs/configuration.md: no default stated for %s; the code's is %s", key, show(defaults[key]))
	}
}

// exampleValue is a key: value line of the example, commented out or not.
type exampleValue struct {
	line int
	key  string
	node *yaml.Node
	// example: the line's comment says "example": a value to adapt, not
	// the default.
	example bool
}

// exampleValues reads every key: value of the example, the commented-out
// lines included ("values shown here as comments are the defaults"), with
// its full key, from the indentation.
func exampleValues(t *testing.T, text string) []exampleValue {
	type level struct {
		indent int
		key    string
	}
	var stack []level
	var out []exampleValue
	pop := func(indent int) string {
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 {
			return ""
		}
		return stack[len(stack)-1].key
	}
	var flatten func(ev exampleValue)
	flatten = func(ev exampleValue) {
		if n := ev.node; n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				flatten(exampleValue{ev.line, ev.key + "." + n.Content[i].Value, n.Content[i+1], ev.example})
			}
			return
		}
		out = append(out, ev)
	}
	for i, line := range strings.Split(text, "\n") {
		body := strings.TrimLeft(line, " ")
		indent := len(line) - len(body)
		if rest, ok := strings.CutPrefix(body, "#"); ok {
			// "  # key: v" is key at indent 2; "#   key: v" at indent 2.
			inner := strings.TrimLeft(rest, " ")
			indent += max(len(rest)-len(inner)-1, 0)
			body = inner
		}
		if item, ok := strings.CutPrefix(body, "- "); ok {
			parent := pop(indent)
			stack = append(stack, level{indent, parent + "[]"})
			indent, body = indent+2, item
		}
		var m yaml.Node
		if body == "" || strings.HasPrefix(body, "#") || yaml.Unmarshal([]byte(body), &m) != nil ||
			len(m.Content) != 1 || m.Content[0].Kind != yaml.MappingNode || len(m.Content[0].Content) != 2 {
			continue
		}
		k, v := m.Content[0].Content[0], m.Content[0].Content[1]
		key := join(pop(indent), k.Value)
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			stack = append(stack, level{indent, key})
			continue
		}
		flatten(exampleValue{i + 1, key, v, strings.Contains(k.LineComment+v.LineComment+m.Content[0].LineComment, "# example")})
	}
	return out
}

// TestExampleShowsDefaults holds config/roc-proxy.example.yaml to the
// code's defaults: a key with a default that the example shows, set or
// commented out, shows the default.
func TestExampleShowsDefaults(t *testing.T) {
	defaults, types := codeDefaults(t)
	data, err := os.ReadFile("roc-proxy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, ev := range exampleValues(t, string(data)) {
		code, has := defaults[ev.key]
		if !has || ev.example {
			continue
		}
		checked++
		v, err := decodeAs(ev.node, types[ev.key])
		if err != nil {
			t.Errorf("roc-proxy.example.yaml:%d: %s: %v", ev.line, ev.key, err)
			continue
		}
		if !reflect.DeepEqual(v.Interface(), code.Interface()) {
			t.Errorf("roc-proxy.example.yaml:%d: %s shows %s, the code's default (config/load.go) is %s", ev.line, ev.key, show(v), show(code))
		}
	}
	if checked < 40 {
		t.Errorf("only %d defaults shown in the example were checked: its reading is broken", checked)
	}
}
