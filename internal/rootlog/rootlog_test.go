package rootlog

import (
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	var b strings.Builder
	log, err := New("cellroot", "json", &b)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello")
	if !strings.Contains(b.String(), `"logger":"cellroot"`) || !strings.Contains(b.String(), `"msg":"hello"`) {
		t.Fatalf("json line: %s", b.String())
	}
	if _, err := New("x", "xml", &b); err == nil {
		t.Fatal("an unknown format was accepted")
	}
}
