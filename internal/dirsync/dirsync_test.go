package dirsync

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestSync(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" { // a directory cannot be fsynced there
		if err := Sync(dir); err != nil {
			t.Fatalf("Sync(%s): %v", dir, err)
		}
	}
	if err := Sync(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Sync of a missing directory: no error")
	}
}
