package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    map[int][]string
		wantErr string
	}{
		{
			name: "toml",
			data: "# vendor manifest\nbank = \"sha256\"\n[pcr]\n0 = [\"" + hexB + "\", \"" + strings.ToUpper(hexA) + "\"]\n7 = [\"" + hexC + "\"]\n",
			want: map[int][]string{0: {hexA, hexB}, 7: {hexC}},
		},
		{
			name: "toml without bank",
			data: "[pcr]\n2 = [\"" + hexA + "\", \"" + hexA + "\"]\n",
			want: map[int][]string{2: {hexA}},
		},
		{
			name: "json",
			data: "\n {\"bank\": \"sha256\", \"pcr\": {\"0\": [\"" + hexA + "\"], \"23\": [\"" + hexB + "\"]}}\n",
			want: map[int][]string{0: {hexA}, 23: {hexB}},
		},
		{name: "toml syntax", data: "[pcr\n", wantErr: "manifest: toml:"},
		{name: "toml unknown key", data: "bank = \"sha256\"\nbnak = \"x\"\n[pcr]\n0 = [\"" + hexA + "\"]\n", wantErr: "manifest: bnak: unknown key"},
		{name: "toml wrong type", data: "[pcr]\n0 = \"" + hexA + "\"\n", wantErr: "pcr.0"},
		{name: "json unknown key", data: "{\"pcrs\": {}}", wantErr: `manifest: json: unknown field "pcrs"`},
		{name: "json trailing", data: "{\"pcr\": {\"0\": [\"" + hexA + "\"]}} {}", wantErr: "manifest: trailing data after the JSON object"},
		{name: "bank", data: "bank = \"sha1\"\n[pcr]\n0 = [\"" + hexA + "\"]\n", wantErr: `manifest: bank: only sha256 is supported, not "sha1"`},
		{name: "empty", data: "", wantErr: "manifest: pcr: no PCR values"},
		{name: "index out of range", data: "[pcr]\n24 = [\"" + hexA + "\"]\n", wantErr: "manifest: pcr.24: not a PCR index 0-23"},
		{name: "index not canonical", data: "[pcr]\n07 = [\"" + hexA + "\"]\n", wantErr: "manifest: pcr.07: not a PCR index 0-23"},
		{name: "index not a number", data: "{\"pcr\": {\"boot\": [\"" + hexA + "\"]}}", wantErr: "manifest: pcr.boot: not a PCR index 0-23"},
		{name: "empty list", data: "[pcr]\n4 = []\n", wantErr: "manifest: pcr.4: empty list"},
		{name: "bad value", data: "[pcr]\n4 = [\"" + hexA + "\", \"" + strings.Repeat("a", 40) + "\"]\n", wantErr: "manifest: pcr.4[1]: not 64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseManifest([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseManifest() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseManifest() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseManifest() = %v, want %v", got, tt.want)
			}
		})
	}
}

// A parsed manifest is meant to become Policy.Golden as is.
func TestManifestIntoPolicy(t *testing.T) {
	g, err := ParseManifest([]byte("[pcr]\n0 = [\"" + hexA + "\"]\n7 = [\"" + hexB + "\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := Default()
	p.Golden = g
	if err := p.Normalize(); err != nil {
		t.Fatalf("Normalize() with manifest golden values: %v", err)
	}
}
