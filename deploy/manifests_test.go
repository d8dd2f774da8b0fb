// Package deploy holds the container image definition and the Kubernetes
// manifests of perso (no Go code): this test checks that every manifest
// parses, has the kinds the README describes, and inlines no secret.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// doc is one manifest document, decoded generically.
type doc struct {
	file string
	m    map[string]any
}

func manifests(t *testing.T) []doc {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s (%v)", err)
	}
	var out []doc
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var m map[string]any
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, i+1, err)
			}
			if m == nil {
				continue // an empty document (a trailing ---)
			}
			for _, k := range []string{"apiVersion", "kind", "metadata"} {
				if _, ok := m[k]; !ok {
					t.Errorf("%s, document %d: no %s", f, i+1, k)
				}
			}
			out = append(out, doc{f, m})
		}
	}
	return out
}

// get walks a path of map keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestManifestsKinds(t *testing.T) {
	var kinds []string
	byKind := map[string]map[string]any{}
	for _, d := range manifests(t) {
		k := get(d.m, "kind").(string)
		kinds = append(kinds, k)
		byKind[k] = d.m
	}
	for _, want := range []string{"Job", "Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("no %s among the manifests (%v)", want, kinds)
		}
	}
	job := byKind["Job"]
	if get(job, "spec", "completionMode") != "Indexed" {
		t.Errorf("the worker Job is not Indexed: %v", get(job, "spec", "completionMode"))
	}
	if p, c := get(job, "spec", "parallelism"), get(job, "spec", "completions"); p == nil || p != c {
		t.Errorf("worker Job parallelism %v, completions %v: want equal (every worker runs until the batch is done)", p, c)
	}
	args := get(job, "spec", "template", "spec", "containers", 0, "args")
	var flat []string
	for _, a := range args.([]any) {
		flat = append(flat, a.(string))
	}
	for _, want := range []string{"run", "--worker"} {
		if !slices.Contains(flat, want) {
			t.Errorf("worker Job args %v lack %s", flat, want)
		}
	}
	dep := byKind["Deployment"]
	if a := get(dep, "spec", "template", "spec", "containers", 0, "args", 0); a != "serve" {
		t.Errorf("the Deployment runs %v, want serve", a)
	}
	// perso serve's probes: readiness on /readyz, liveness on /healthz, on
	// the container's metrics port, which serve.metrics_listen opens.
	c := get(dep, "spec", "template", "spec", "containers", 0)
	ports := map[string]int{}
	for _, p := range get(c, "ports").([]any) {
		ports[get(p, "name").(string)] = get(p, "containerPort").(int)
	}
	env := map[string]string{}
	for _, e := range get(c, "env").([]any) {
		if v, ok := get(e, "value").(string); ok {
			env[get(e, "name").(string)] = v
		}
	}
	for _, pr := range []struct{ probe, path string }{{"readinessProbe", "/readyz"}, {"livenessProbe", "/healthz"}} {
		if got := get(c, pr.probe, "httpGet", "path"); got != pr.path {
			t.Errorf("serve %s path %v, want %s", pr.probe, got, pr.path)
		}
		port, _ := get(c, pr.probe, "httpGet", "port").(string)
		if ports[port] == 0 || !strings.HasSuffix(env["PERSO_SERVE_METRICS_LISTEN"], fmt.Sprintf(":%d", ports[port])) {
			t.Errorf("serve %s on port %q (%d): PERSO_SERVE_METRICS_LISTEN is %q", pr.probe, port, ports[port], env["PERSO_SERVE_METRICS_LISTEN"])
		}
	}
	if env["MALLOC_ARENA_MAX"] == "" {
		t.Error("serve has no MALLOC_ARENA_MAX (RSS grows without it on SoftHSM2)")
	}
	// The Service selects the Deployment's pods.
	sel := get(byKind["Service"], "spec", "selector").(map[string]any)
	labels := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("Service selects %s=%v, the Deployment's pods have %v", k, v, labels[k])
		}
	}
}

// secretName matches environment variables and keys that hold secrets.
var secretName = regexp.MustCompile(`(?i)(pin|dsn|password|passphrase|secret|token_key|private)`)

// TestManifestsInlineNoSecret: no Secret with data in the manifests, and
// every secret-looking environment variable comes from a secretKeyRef, never
// a literal value; no ConfigMap key looks like a secret either.
func TestManifestsInlineNoSecret(t *testing.T) {
	for _, d := range manifests(t) {
		kind := get(d.m, "kind")
		if kind == "Secret" {
			if get(d.m, "data") != nil || get(d.m, "stringData") != nil {
				t.Errorf("%s: a Secret with inlined values", d.file)
			}
		}
		if kind == "ConfigMap" {
			for k := range get(d.m, "data").(map[string]any) {
				if secretName.MatchString(k) {
					t.Errorf("%s: ConfigMap key %s looks like a secret: put it in the Secret", d.file, k)
				}
			}
		}
		for _, c := range containers(d.m) {
			env, _ := get(c, "env").([]any)
			for _, e := range env {
				name, _ := get(e, "name").(string)
				if !secretName.MatchString(name) {
					continue
				}
				if get(e, "value") != nil || get(e, "valueFrom", "secretKeyRef") == nil {
					t.Errorf("%s: %s must come from a secretKeyRef, not a value", d.file, name)
				}
			}
			for _, a := range stringsOf(get(c, "args")) {
				if strings.Contains(strings.ToLower(a), "pin") || strings.Contains(a, "postgres://") {
					t.Errorf("%s: argument %q carries a secret", d.file, a)
				}
			}
		}
	}
}

// containers returns the containers of a Job's or Deployment's pod template.
func containers(m map[string]any) []any {
	c, _ := get(m, "spec", "template", "spec", "containers").([]any)
	return c
}

func stringsOf(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// TestDockerfileStages: the image builds perso with cgo (PKCS#11 loads the
// HSM library with dlopen) in a builder stage and ships it in a runtime
// stage, plus a SoftHSM2 variant; it bakes in no PIN or DSN.
func TestDockerfileStages(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{" AS build", " AS runtime", "FROM runtime AS softhsm", "CGO_ENABLED=1",
		"COPY --from=build /out/perso", "ENTRYPOINT [\"/usr/local/bin/perso\"]", "USER 10001"} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, bad := range []string{"PERSO_HSM_PIN", "PERSO_STORE_DSN=", "PERSO_HSM_SO_PIN"} {
		for _, line := range strings.Split(s, "\n") {
			if strings.Contains(line, bad) && !strings.HasPrefix(strings.TrimSpace(line), "#") {
				t.Errorf("Dockerfile sets %s: %q", bad, line)
			}
		}
	}
}

// TestDocsPointers: deploy/README.md exists, and every file of the
// repository that the Dockerfile's comments, the manifests' comments or the
// README name (deploy/…, docs/….md, k8s/….yaml) is there, so that no
// pointer leads nowhere.
func TestDocsPointers(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatalf("deploy/README.md: %v", err)
	}
	texts := map[string]string{"README.md": string(readme)}
	files, _ := filepath.Glob("k8s/*.yaml")
	for _, f := range append(files, "Dockerfile") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[f] = string(b)
	}
	ref := regexp.MustCompile(`(?:\.\./)?(?:deploy/|docs/|k8s/)[A-Za-z0-9_./-]*[A-Za-z0-9_]`)
	for name, text := range texts {
		for _, m := range ref.FindAllString(text, -1) {
			m, _, _ = strings.Cut(m, "#")
			var path string
			switch {
			case strings.HasPrefix(m, "../"):
				path = m // relative to deploy/, as the README links
			case strings.HasPrefix(m, "deploy/"):
				path = strings.TrimPrefix(m, "deploy/")
			case strings.HasPrefix(m, "docs/"):
				path = filepath.Join("..", m)
			default:
				path = m
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s names %s, which does not exist", name, m)
			}
		}
	}
	for _, want := range []string{"docker build", "Indexed Job", "Deployment", "perso-secrets", "Scaling out"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("deploy/README.md does not mention %q", want)
		}
	}
}
