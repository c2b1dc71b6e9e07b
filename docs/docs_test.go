// Package docs holds roc-proxy's documentation; its tests hold the
// documentation to the code, so that neither drifts from the other
// unnoticed: every configuration key, metric, command and package of the
// code is documented, every test a document names exists, and every
// relative link of the Markdown files leads somewhere.
package docs

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/app"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"go.yaml.in/yaml/v3"
)

// root is the repository, seen from this package's folder.
const root = ".."

func read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tableRows returns the rows of the Markdown tables of doc whose first cell
// is one backticked word, keyed by that word, with their other cells.
// A row whose first cell starts with a backtick but is not exactly one
// backticked word is an error: the tables stay parseable.
func tableRows(t *testing.T, doc, text string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	for i, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := splitCells(line)
		first := cells[0]
		key := strings.Trim(first, "`")
		if strings.Count(first, "`") != 2 || !strings.HasSuffix(first, "`") || key == "" {
			t.Errorf("%s:%d: the first cell %q is not one backticked key", doc, i+1, first)
			continue
		}
		if _, dup := rows[key]; dup {
			t.Errorf("%s:%d: %s has two rows", doc, i+1, key)
		}
		rows[key] = cells[1:]
	}
	return rows
}

// splitCells splits a table row on the "|" that are not escaped ("\|"),
// trimming each cell.
func splitCells(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	if strings.HasSuffix(line, "|") && !strings.HasSuffix(line, `\|`) {
		line = line[:len(line)-1]
	}
	var cells []string
	var cell strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cell.WriteString(`\|`)
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

var durationType = reflect.TypeOf(time.Duration(0))

// textValue is implemented by the configuration's typed values decoded
// from one scalar (config.Pin, config.Prefix): keys, not sections.
var textValue = reflect.TypeOf((*interface{ UnmarshalYAML(*yaml.Node) error })(nil)).Elem()

// configPaths walks the configuration types as YAML sees them: leaves are
// the keys that take a value, nodes the sections holding other keys.
// Slices of sections are written "[]", maps of sections ".<name>".
func configPaths(t reflect.Type, prefix string, leaves, nodes map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if opts == "inline" {
			configPaths(f.Type, prefix, leaves, nodes)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		elem := func(t reflect.Type) reflect.Type {
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			return t
		}
		switch {
		case ft == durationType, reflect.PointerTo(ft).Implements(textValue),
			ft.Kind() == reflect.Slice && reflect.PointerTo(elem(ft.Elem())).Implements(textValue):
			leaves[path] = true
		case ft.Kind() == reflect.Struct:
			nodes[path] = true
			configPaths(ft, path, leaves, nodes)
		case ft.Kind() == reflect.Slice && elem(ft.Elem()).Kind() == reflect.Struct:
			nodes[path] = true
			nodes[path+"[]"] = true
			configPaths(elem(ft.Elem()), path+"[]", leaves, nodes)
		case ft.Kind() == reflect.Map && elem(ft.Elem()).Kind() == reflect.Struct:
			nodes[path] = true
			nodes[path+".<name>"] = true
			configPaths(elem(ft.Elem()), path+".<name>", leaves, nodes)
		default:
			leaves[path] = true
		}
	}
}

var sameKeysAs = regexp.MustCompile("same keys as `([^`]+)`")

// TestConfigurationReferenceListsEveryKey holds docs/configuration.md to
// the yaml tags of config.Config: a key added to the code and not to the
// reference, or a row naming a key the code does not have (renamed,
// removed, misspelt), fails.
func TestConfigurationReferenceListsEveryKey(t *testing.T) {
	leaves, nodes := map[string]bool{}, map[string]bool{}
	configPaths(reflect.TypeOf(config.Config{}), "", leaves, nodes)
	if len(leaves) < 100 {
		t.Fatalf("only %d configuration keys found in config.Config: the walk is broken", len(leaves))
	}
	rows := tableRows(t, "docs/configuration.md", read(t, "docs/configuration.md"))
	alias := map[string]string{} // a row saying "same keys as `X`"
	for key, cells := range rows {
		if len(cells) != 2 {
			t.Errorf("docs/configuration.md: row %s has %d cells, want | key | default | meaning |", key, len(cells)+1)
			continue
		}
		if m := sameKeysAs.FindStringSubmatch(cells[1]); m != nil {
			alias[key] = m[1]
		}
		if !leaves[key] && !nodes[key] {
			t.Errorf("docs/configuration.md documents %s, which config.Config does not have", key)
		}
	}
	var documented func(path string, depth int) bool
	documented = func(path string, depth int) bool {
		if _, ok := rows[path]; ok {
			return true
		}
		if depth > 3 {
			return false
		}
		for a, x := range alias {
			if rest, ok := strings.CutPrefix(path, a+"."); ok && documented(x+"."+rest, depth+1) {
				return true
			}
		}
		return false
	}
	var missing []string
	for path := range leaves {
		if !documented(path, 0) {
			missing = append(missing, path)
		}
	}
	sort.Strings(missing)
	for _, path := range missing {
		t.Errorf("configuration key %s (config/config.go) is missing from docs/configuration.md", path)
	}
}

// registrations records what metrics.New registers, without a registry's
// own checks: the test wants every collector, as declared.
type registrations struct{ collectors []prometheus.Collector }

func (r *registrations) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *registrations) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}

func (r *registrations) Unregister(prometheus.Collector) bool { return true }

var (
	descName     = regexp.MustCompile(`fqName: "([^"]+)"`)
	descConst    = regexp.MustCompile(`constLabels: \{([^}]*)\}`)
	descVariable = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	backticked   = regexp.MustCompile("`([^`]+)`")
)

// codeMetrics is every metric internal/metrics declares (metrics.New and
// the audit volume collector), with its label names, sorted.
func codeMetrics(t *testing.T) map[string][]string {
	t.Helper()
	reg := &registrations{}
	if _, err := metrics.New(reg, metrics.BuildInfo{Version: "v", Revision: "r"}); err != nil {
		t.Fatal(err)
	}
	reg.collectors = append(reg.collectors, metrics.NewAuditVolume(t.TempDir()))
	out := map[string][]string{}
	for _, c := range reg.collectors {
		ch := make(chan *prometheus.Desc)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			s := d.String()
			m := descName.FindStringSubmatch(s)
			if m == nil {
				t.Fatalf("cannot read the name of %s", s)
			}
			if strings.HasPrefix(m[1], "go_") || strings.HasPrefix(m[1], "process_") {
				continue // the standard collectors, documented as such
			}
			var labels []string
			if c := descConst.FindStringSubmatch(s); c != nil && c[1] != "" {
				for _, pair := range strings.Split(c[1], ",") {
					name, _, _ := strings.Cut(pair, "=")
					labels = append(labels, name)
				}
			}
			if v := descVariable.FindStringSubmatch(s); v != nil && v[1] != "" {
				for _, name := range strings.Split(v[1], ",") {
					labels = append(labels, strings.TrimSuffix(strings.TrimPrefix(name, "c("), ")"))
				}
			}
			sort.Strings(labels)
			out[m[1]] = labels
		}
	}
	return out
}

// TestMetricsTableListsEveryMetric holds the metrics table of
// docs/operations.md to internal/metrics: every metric with its labels,
// and no row for a metric the code does not export.
func TestMetricsTableListsEveryMetric(t *testing.T) {
	code := codeMetrics(t)
	if len(code) < 40 {
		t.Fatalf("only %d metrics read from internal/metrics: the reading is broken", len(code))
	}
	rows := tableRows(t, "docs/operations.md", read(t, "docs/operations.md"))
	doc := map[string][]string{}
	for key, cells := range rows {
		if !strings.HasPrefix(key, "roc_proxy_") {
			continue
		}
		if len(cells) != 2 {
			t.Errorf("docs/operations.md: row %s has %d cells, want | name | labels | meaning |", key, len(cells)+1)
			continue
		}
		var labels []string
		for _, m := range backticked.FindAllStringSubmatch(cells[0], -1) {
			labels = append(labels, m[1])
		}
		sort.Strings(labels)
		doc[key] = labels
	}
	for name, labels := range code {
		got, ok := doc[name]
		switch {
		case !ok:
			t.Errorf("metric %s (internal/metrics) is missing from the metrics table of docs/operations.md", name)
		case !slices.Equal(got, labels):
			t.Errorf("docs/operations.md gives %s the labels %v; internal/metrics gives it %v", name, got, labels)
		}
	}
	for name := range doc {
		if _, ok := code[name]; !ok {
			t.Errorf("docs/operations.md lists %s, which internal/metrics does not declare", name)
		}
	}
}

// errorIdentifiers reads, from the Go files of dir, the "error" codes and
// "reason"s roc-proxy can answer: string constants named Code* or Reason*,
// and the literal reasons given to problem(status, code, reason, message),
// forbidden(reason, message), Problem{Reason: ...} or assigned to a
// reason.
func errorIdentifiers(t *testing.T, dir string) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, filepath.Join(root, dir), func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	literal := func(e ast.Expr) {
		if l, ok := e.(*ast.BasicLit); ok && l.Kind == token.STRING && len(l.Value) > 2 {
			ids[strings.Trim(l.Value, "`\"")] = true
		}
	}
	for _, pkg := range pkgs {
		ast.Inspect(pkg, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, name := range n.Names {
					if (strings.HasPrefix(name.Name, "Code") || strings.HasPrefix(name.Name, "Reason")) && i < len(n.Values) {
						literal(n.Values[i])
					}
				}
			case *ast.CallExpr:
				if f, ok := n.Fun.(*ast.Ident); ok {
					switch {
					case f.Name == "problem" && len(n.Args) == 4:
						literal(n.Args[2])
					case f.Name == "forbidden" && len(n.Args) == 2:
						literal(n.Args[0])
					}
				}
			case *ast.AssignStmt: // reason := "network"; p.Reason = "headers_too_large"
				for i, lhs := range n.Lhs {
					name := ""
					switch l := lhs.(type) {
					case *ast.Ident:
						name = l.Name
					case *ast.SelectorExpr:
						name = l.Sel.Name
					}
					if (name == "reason" || name == "Reason") && i < len(n.Rhs) {
						literal(n.Rhs[i])
					}
				}
			case *ast.CompositeLit:
				if typ, ok := n.Type.(*ast.Ident); ok && typ.Name == "Problem" {
					for _, el := range n.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok {
							if k, ok := kv.Key.(*ast.Ident); ok && (k.Name == "Reason" || k.Name == "Code") {
								literal(kv.Value)
							}
						}
					}
				}
			}
			return true
		})
	}
	return ids
}

// TestErrorTableListsEveryCode holds the error table of
// docs/sih-integration.md to what the code answers: every error code and
// reason of internal/proxy, and the classifications of internal/trust and
// internal/egress it passes on.
func TestErrorTableListsEveryCode(t *testing.T) {
	doc := read(t, "docs/sih-integration.md")
	i := strings.Index(doc, "\n## Errors")
	if i < 0 {
		t.Fatal("docs/sih-integration.md has no Errors section")
	}
	table := doc[i:]
	n := 0
	for _, dir := range []string{"internal/proxy", "internal/trust", "internal/egress"} {
		for id := range errorIdentifiers(t, dir) {
			n++
			if !strings.Contains(table, "`"+id+"`") {
				t.Errorf("%s answers the error or reason %q, which the error table of docs/sih-integration.md does not list", dir, id)
			}
		}
	}
	if n < 40 {
		t.Fatalf("only %d error codes and reasons read from the code: the reading is broken", n)
	}
}

var usageCommand = regexp.MustCompile(`roc-proxy((?: [a-z][a-z0-9-]*)+)`)

// TestCommandLineListsEveryCommand holds docs/command-line.md to the
// program's own help: every command and subcommand its usage lines name.
func TestCommandLineListsEveryCommand(t *testing.T) {
	help := func(args ...string) string {
		var out, errOut bytes.Buffer
		if err := app.Run(context.Background(), args, &out, &errOut); err != nil {
			t.Fatalf("roc-proxy %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	top := help("--help")
	commands := map[string]bool{}
	// usage reads the command of a usage line ("roc-proxy csr --role ..."
	// gives "csr"); other lines give "".
	usage := func(line string) string {
		line = strings.TrimPrefix(strings.TrimSpace(line), "Usage: ")
		if !strings.HasPrefix(line, "roc-proxy ") {
			return ""
		}
		if m := usageCommand.FindStringSubmatch(line); m != nil {
			return strings.TrimSpace(m[1])
		}
		return ""
	}
	for _, line := range strings.Split(top, "\n") {
		c := usage(line)
		if c == "" {
			continue
		}
		commands[c] = true
		// The command's own help names its subcommands.
		for _, l := range strings.Split(help("help", strings.Fields(c)[0]), "\n") {
			if sub := usage(l); sub != "" {
				commands[sub] = true
			}
		}
	}
	if len(commands) < 10 {
		t.Fatalf("only %d commands read from roc-proxy --help: %v", len(commands), commands)
	}
	doc := read(t, "docs/command-line.md")
	for c := range commands {
		if !regexp.MustCompile("`roc-proxy " + regexp.QuoteMeta(c) + "[` ]").MatchString(doc) {
			t.Errorf("command %q (roc-proxy --help) is missing from docs/command-line.md", "roc-proxy "+c)
		}
	}
}

// TestArchitectureNamesEveryPackage holds docs/architecture.md's package
// map to the tree: a package added, moved or split is named there.
func TestArchitectureNamesEveryPackage(t *testing.T) {
	doc := read(t, "docs/architecture.md")
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		if rel != "." && !seen[rel] {
			seen[rel] = true
			if !strings.Contains(doc, "`"+rel+"`") {
				t.Errorf("package %s is not named in docs/architecture.md's package map", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 15 {
		t.Fatalf("only %d packages found: the walk is broken", len(seen))
	}
}

// markdownFiles are the documents whose links and names are checked.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md", "helm/roc-proxy/README.md"}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		rel, _ := filepath.Rel(root, d)
		files = append(files, filepath.ToSlash(rel))
	}
	if len(files) < 8 {
		t.Fatalf("only %d Markdown files found: %v", len(files), files)
	}
	return files
}

var testName = regexp.MustCompile("`((?:Test|Benchmark|Fuzz)[A-Z][A-Za-z0-9_]*)`")

// TestNamedTestsExist: a test, benchmark or fuzz target a document names
// (as the proof of a rule, or a figure's source) exists in the code.
func TestNamedTestsExist(t *testing.T) {
	var sources bytes.Buffer
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, "_test.go") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sources.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	src := sources.String()
	for _, file := range markdownFiles(t) {
		for _, m := range testName.FindAllStringSubmatch(read(t, file), -1) {
			name := m[1]
			if strings.HasSuffix(name, "Xxx") {
				continue // the naming pattern itself
			}
			if !strings.Contains(src, "func "+name+"(") {
				t.Errorf("%s names %s, which no _test.go declares", file, name)
			}
		}
	}
}

var (
	mdLink     = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	codeFence  = regexp.MustCompile("(?ms)^\\s*```.*?^\\s*```")
	inlineCode = regexp.MustCompile("`[^`\n]*`")
)

// headingAnchors are the anchors GitHub gives a document's headings:
// lower case, punctuation but "-" and "_" dropped, spaces as "-", a
// repeated heading suffixed "-1", "-2".
func headingAnchors(text string) map[string]bool {
	anchors, count := map[string]bool{}, map[string]int{}
	for _, line := range strings.Split(codeFence.ReplaceAllString(text, ""), "\n") {
		trimmed := strings.TrimLeft(line, "#")
		if len(trimmed) == len(line) || len(line)-len(trimmed) > 6 || !strings.HasPrefix(trimmed, " ") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(trimmed)) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := count[a]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			anchors[a] = true
		}
		count[a]++
	}
	return anchors
}

// TestRelativeLinksLeadSomewhere: every relative link of the README, the
// documents and the chart's README names a file that exists, and its
// #anchor a heading of that document.
func TestRelativeLinksLeadSomewhere(t *testing.T) {
	for _, file := range markdownFiles(t) {
		text := inlineCode.ReplaceAllString(codeFence.ReplaceAllString(read(t, file), ""), "")
		links := mdLink.FindAllStringSubmatch(text, -1)
		for _, m := range links {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.ToSlash(filepath.Join(filepath.Dir(file), path))
				if _, err := os.Stat(filepath.Join(root, dest)); err != nil {
					t.Errorf("%s links to %s, which does not exist (%s)", file, target, dest)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				t.Errorf("%s links to %s: an anchor in a file that is not Markdown", file, target)
				continue
			}
			if !headingAnchors(read(t, dest))[anchor] {
				t.Errorf("%s links to %s: %s has no heading #%s", file, target, dest, anchor)
			}
		}
	}
}
