// helm-render renders a Helm chart the way `helm template` does, for CI machines without helm:
// Go's text/template with the sprig functions (the engine Helm is built on), plus the parts of
// Helm's own layer that charts use: include, tpl, required, toYaml/fromYaml/toJson/fromJson,
// lookup (always empty, as in `helm template`), .Release, .Chart, .Values, .Capabilities,
// .Files and .Template.
//
// Build (Debian: golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o helm-render ./tools/helm-render
//
// Usage:
//
//	helm-render [flags] CHART_DIR
//	  -f FILE             values file, repeatable, later ones win (like helm -f)
//	  --set k.e.y=v,...   like helm --set (ints, bools and null inferred; no list indexes)
//	  --set-string k=v    like helm --set-string
//	  --name NAME         release name (default "release-name", as helm template)
//	  --namespace NS      release namespace (default "default")
//	  --api-versions G/V  add to .Capabilities.APIVersions, repeatable (as helm template)
//	  --kube-version V    .Capabilities.KubeVersion (default v1.30.0)
//	  --strict            a missing map key is an error (helm lint --strict), not ""
//	  --json              print {"manifests":[{source,kind,hook,content}],"notes","values"} instead of YAML
//
// What differs from helm: no subcharts, no schema validation (CI does that with ajv), documents
// that hold only comments are dropped, and .helmignore supports plain globs only.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// APIVersions answers .Capabilities.APIVersions.Has like Helm's VersionSet.
type APIVersions []string

func (v APIVersions) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type KubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k KubeVersion) String() string { return k.Version }

type Capabilities struct {
	APIVersions APIVersions
	KubeVersion KubeVersion
	HelmVersion map[string]string
}

// Files is .Files: the chart's files outside templates/ (and the ones Helm treats specially).
type Files map[string][]byte

func (f Files) Get(name string) string      { return string(f[name]) }
func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Lines(name string) []string {
	s := string(f[name])
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// builtinAPIVersions are the group/versions a current cluster serves without CRDs (Helm's
// default set for `helm template` is the same idea); --api-versions adds to it.
var builtinAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2",
	"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "storage.k8s.io/v1",
	"apiextensions.k8s.io/v1", "node.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
	"scheduling.k8s.io/v1", "admissionregistration.k8s.io/v1", "certificates.k8s.io/v1",
	"events.k8s.io/v1", "apiregistration.k8s.io/v1", "flowcontrol.apiserver.k8s.io/v1",
}

// installOrder is Helm's kind order for manifests (releaseutil.InstallOrder).
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList",
	"RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController",
	"ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
	"IngressClass", "Ingress", "APIService",
}

type manifest struct {
	Source  string `json:"source"`
	Kind    string `json:"kind"`
	Hook    bool   `json:"hook"`
	Content string `json:"content"`
}

func main() {
	var valueFiles, sets, setStrings, apiVersions multiFlag
	fs := flag.NewFlagSet("helm-render", flag.ContinueOnError)
	fs.Var(&valueFiles, "f", "values file (repeatable)")
	fs.Var(&valueFiles, "values", "values file (repeatable)")
	fs.Var(&sets, "set", "key=value (repeatable)")
	fs.Var(&setStrings, "set-string", "key=value as a string (repeatable)")
	fs.Var(&apiVersions, "api-versions", "extra API version for .Capabilities (repeatable)")
	name := fs.String("name", "release-name", "release name")
	namespace := fs.String("namespace", "default", "release namespace")
	kubeVersion := fs.String("kube-version", "v1.30.0", "Kubernetes version for .Capabilities")
	strict := fs.Bool("strict", false, "fail on a missing map key")
	asJSON := fs.Bool("json", false, "print JSON instead of multi-document YAML")
	// Flags may follow the chart directory, as with helm.
	args := os.Args[1:]
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			os.Exit(2)
		}
		args = fs.Args()
		if len(args) > 0 {
			positional = append(positional, args[0])
			args = args[1:]
		}
	}
	if len(positional) != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-render [flags] CHART_DIR")
		os.Exit(2)
	}
	out, err := render(options{
		chartDir: positional[0], valueFiles: valueFiles, sets: sets, setStrings: setStrings,
		apiVersions: apiVersions, name: *name, namespace: *namespace, kubeVersion: *kubeVersion, strict: *strict,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s\n", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(os.Stderr, "Error: %s\n", err)
			os.Exit(1)
		}
		return
	}
	for _, m := range out.Manifests {
		fmt.Printf("---\n# Source: %s\n%s\n", m.Source, m.Content)
	}
}

type options struct {
	chartDir                                  string
	valueFiles, sets, setStrings, apiVersions []string
	name, namespace, kubeVersion              string
	strict                                    bool
}

type result struct {
	Manifests []manifest `json:"manifests"`
	Notes     string     `json:"notes"`
	// Values are the coalesced values the templates saw, for checking against values.schema.json.
	Values map[string]interface{} `json:"values"`
}

func render(o options) (*result, error) {
	chartRaw, err := os.ReadFile(filepath.Join(o.chartDir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	var chartMeta map[string]interface{}
	if err := yaml.Unmarshal(chartRaw, &chartMeta); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %w", err)
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return nil, errors.New("Chart.yaml: name is required")
	}
	if v, _ := chartMeta["apiVersion"].(string); v != "v2" {
		return nil, errors.New("Chart.yaml: apiVersion must be v2")
	}

	values, err := readValues(filepath.Join(o.chartDir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range o.valueFiles {
		user, err := readValues(f)
		if err != nil {
			return nil, err
		}
		values = coalesce(values, user)
	}
	for _, s := range o.sets {
		if err := applySet(values, s, false); err != nil {
			return nil, err
		}
	}
	for _, s := range o.setStrings {
		if err := applySet(values, s, true); err != nil {
			return nil, err
		}
	}

	templates, files, err := loadChartFiles(o.chartDir)
	if err != nil {
		return nil, err
	}

	kv := strings.TrimPrefix(o.kubeVersion, "v")
	parts := strings.SplitN(kv, ".", 3)
	if len(parts) < 2 {
		return nil, fmt.Errorf("--kube-version %q is not vMAJOR.MINOR[.PATCH]", o.kubeVersion)
	}
	top := map[string]interface{}{
		"Values": values,
		"Chart":  chartObject(chartMeta),
		"Release": map[string]interface{}{
			"Name": o.name, "Namespace": o.namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": Capabilities{
			APIVersions: append(append(APIVersions{}, builtinAPIVersions...), o.apiVersions...),
			KubeVersion: KubeVersion{Version: "v" + kv, Major: parts[0], Minor: parts[1], GitVersion: "v" + kv},
			HelmVersion: map[string]string{"Version": "v3.16.0"},
		},
		"Files": files,
	}

	// One template set holds every file, so include can reach any define, as in Helm.
	root := template.New("gotpl")
	if o.strict {
		root.Option("missingkey=error")
	} else {
		root.Option("missingkey=zero")
	}
	depth := 0
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["include"] = func(name string, data interface{}) (string, error) {
		depth++
		defer func() { depth-- }()
		if depth > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %w", text, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	funcs["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	funcs["toYaml"] = toYaml
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["toJson"] = func(v interface{}) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	root.Funcs(funcs)

	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := root.New(n).Parse(templates[n]); err != nil {
			return nil, cleanupParseError(err)
		}
	}

	res := &result{Manifests: []manifest{}, Values: values}
	var hooks []manifest
	basePath := chartName + "/templates"
	for _, n := range names {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") {
			continue
		}
		ctx := map[string]interface{}{}
		for k, v := range top {
			ctx[k] = v
		}
		ctx["Template"] = map[string]interface{}{"Name": n, "BasePath": basePath}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, ctx); err != nil {
			return nil, cleanupExecError(n, err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" {
			res.Notes = text
			continue
		}
		for _, doc := range splitManifests(text) {
			var head struct {
				Kind     string `yaml:"kind"`
				Metadata struct {
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"metadata"`
			}
			var any interface{}
			if err := yaml.Unmarshal([]byte(doc), &any); err != nil {
				return nil, fmt.Errorf("YAML parse error on %s: %w\n%s", n, err, numbered(doc))
			}
			if any == nil {
				continue
			}
			if _, ok := any.(map[string]interface{}); !ok {
				return nil, fmt.Errorf("%s: a document is not a YAML mapping:\n%s", n, numbered(doc))
			}
			_ = yaml.Unmarshal([]byte(doc), &head)
			m := manifest{Source: n, Kind: head.Kind, Content: doc}
			if _, ok := head.Metadata.Annotations["helm.sh/hook"]; ok {
				m.Hook = true
				hooks = append(hooks, m)
			} else {
				res.Manifests = append(res.Manifests, m)
			}
		}
	}
	sort.SliceStable(res.Manifests, func(i, j int) bool {
		return kindRank(res.Manifests[i].Kind) < kindRank(res.Manifests[j].Kind)
	})
	res.Manifests = append(res.Manifests, hooks...)
	return res, nil
}

func kindRank(kind string) int {
	for i, k := range installOrder {
		if k == kind {
			return i
		}
	}
	return len(installOrder)
}

var sepRe = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

// splitManifests splits on YAML document separators, dropping empty documents (Helm's SplitManifests).
func splitManifests(text string) []string {
	var out []string
	for _, d := range sepRe.Split(text, -1) {
		if strings.TrimSpace(d) != "" {
			out = append(out, strings.TrimSpace(d))
		}
	}
	return out
}

func numbered(doc string) string {
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		lines[i] = fmt.Sprintf("%4d | %s", i+1, l)
	}
	return strings.Join(lines, "\n")
}

var warnRe = regexp.MustCompile(`.*error calling (?:required|fail): (.*)`)

// cleanupExecError turns Go's template error into Helm's "execution error at (file:line:col): msg".
func cleanupExecError(name string, err error) error {
	tokens := strings.SplitN(err.Error(), ": ", 3)
	if len(tokens) != 3 {
		return fmt.Errorf("%s: %w", name, err)
	}
	if parts := warnRe.FindStringSubmatch(tokens[2]); len(parts) >= 2 {
		return fmt.Errorf("execution error at (%s): %s", tokens[1], parts[1])
	}
	return err
}

func cleanupParseError(err error) error { return fmt.Errorf("parse error: %w", err) }

func toYaml(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	_ = enc.Close()
	return strings.TrimSuffix(buf.String(), "\n")
}

// readValues reads a values file as Helm does: numbers become float64 (Helm goes through JSON).
func readValues(file string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var v map[string]interface{}
	if err := yaml.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if v == nil {
		v = map[string]interface{}{}
	}
	return jsonNumbers(v).(map[string]interface{}), nil
}

func jsonNumbers(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = jsonNumbers(e)
		}
		return x
	case []interface{}:
		for i, e := range x {
			x[i] = jsonNumbers(e)
		}
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	default:
		return v
	}
}

// coalesce merges user values over defaults: maps deeply, anything else replaced, null deletes.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		sm, sIsMap := sv.(map[string]interface{})
		dm, dIsMap := dst[k].(map[string]interface{})
		if sIsMap && dIsMap {
			dst[k] = coalesce(dm, sm)
		} else {
			dst[k] = sv
		}
	}
	return dst
}

// applySet handles one --set argument: comma-separated key.path=value pairs (`\,` and `\.` escape).
func applySet(values map[string]interface{}, arg string, asString bool) error {
	for _, pair := range splitEscaped(arg, ',') {
		eq := strings.Index(pair, "=")
		if eq < 0 {
			return fmt.Errorf("--set %q: key=value expected", pair)
		}
		keyPath, raw := pair[:eq], strings.ReplaceAll(pair[eq+1:], `\,`, ",")
		if strings.ContainsAny(keyPath, "[]") {
			return fmt.Errorf("--set %q: list indexes are not supported here; use a values file", pair)
		}
		keys := splitEscaped(keyPath, '.')
		var val interface{} = raw
		if !asString {
			val = inferValue(raw)
		}
		m := values
		for i, k := range keys {
			k = strings.ReplaceAll(k, `\.`, ".")
			if i == len(keys)-1 {
				if val == nil {
					delete(m, k)
				} else {
					m[k] = val
				}
				break
			}
			next, ok := m[k].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				m[k] = next
			}
			m = next
		}
	}
	return nil
}

func inferValue(raw string) interface{} {
	switch raw {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if n, err := strconv.ParseInt(raw, 10, 64); err == nil && (raw == "0" || !strings.HasPrefix(raw, "0")) {
		return n
	}
	return raw
}

func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == sep {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// chartObject is .Chart: Chart.yaml's fields with Helm's capitalised names.
func chartObject(meta map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range meta {
		switch k {
		case "apiVersion":
			out["APIVersion"] = v
		default:
			out[strings.ToUpper(k[:1])+k[1:]] = v
		}
	}
	return out
}

// loadChartFiles returns the templates (by "<chart>/templates/<path>") and .Files.
func loadChartFiles(chartDir string) (map[string]string, Files, error) {
	chartRaw, _ := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	var meta struct {
		Name string `yaml:"name"`
	}
	_ = yaml.Unmarshal(chartRaw, &meta)
	ignore := readHelmignore(filepath.Join(chartDir, ".helmignore"))
	templates := map[string]string{}
	files := Files{}
	special := map[string]bool{
		"Chart.yaml": true, "Chart.lock": true, "values.yaml": true, "values.schema.json": true,
		".helmignore": true, "requirements.yaml": true, "requirements.lock": true,
	}
	err := filepath.Walk(chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if ignored(ignore, rel, info.IsDir()) {
			if info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if info.IsDir() {
			if rel == "charts" {
				return fmt.Errorf("subcharts (charts/) are not supported by this renderer")
			}
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			templates[meta.Name+"/"+rel] = string(raw)
		case special[rel]:
		default:
			files[rel] = raw
		}
		return nil
	})
	return templates, files, err
}

func readHelmignore(file string) []string {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func ignored(patterns []string, rel string, isDir bool) bool {
	for _, p := range patterns {
		dirOnly := strings.HasSuffix(p, "/")
		p = strings.TrimSuffix(p, "/")
		if dirOnly && !isDir {
			continue
		}
		target := path.Base(rel)
		if strings.Contains(p, "/") {
			target = rel
		}
		if ok, _ := path.Match(p, target); ok {
			return true
		}
	}
	return false
}
