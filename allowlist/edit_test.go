package allowlist

import (
	"errors"
	"strings"
	"testing"
)

const handWritten = `# My allowlist. Keep this comment.
version = 1

[session]
max_cells = 8 # and this one

# A cell I run by hand.
[cell.tool]
exec = "/usr/local/bin/tool" # trailing comment
`

func TestSetAndRemoveBlocksKeepTheUsersText(t *testing.T) {
	owner := "/home/u/my app"
	eye := Block{Cell: "eye", Body: "[cell.eye]\nexec = \"/c/eye\"\nsource = \"/home/u/my app/cells/eye\"\nspawn = [\"retina\"]\n"}
	retina := Block{Cell: "retina", Body: "[cell.retina]\nexec = \"/c/retina\"\n"}
	out, err := SetBlocks("a.toml", []byte(handWritten), owner, []Block{eye, retina})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), handWritten) {
		t.Fatalf("the user's text changed:\n%s", out)
	}
	f, err := Parse("a.toml", out)
	if err != nil || len(f.Cells) != 3 || f.SessionLimits.MaxCells != 8 {
		t.Fatalf("%v %+v", err, f)
	}
	// Granting again replaces in place: same text for the same blocks,
	// a changed block where it stood.
	again, err := SetBlocks("a.toml", out, owner, []Block{eye, retina})
	if err != nil || string(again) != string(out) {
		t.Fatalf("second grant changed the file: %v\n%s", err, again)
	}
	eye.Body = strings.Replace(eye.Body, "[cell.eye]\n", "[cell.eye]\nnetwork = true\n", 1)
	changed, err := SetBlocks("a.toml", out, owner, []Block{eye, retina})
	if err != nil || !strings.Contains(string(changed), "network = true") || len(changed) != len(out)+len("network = true\n") {
		t.Fatalf("changed grant: %v\n%s", err, changed)
	}
	back, n, err := RemoveBlocks("a.toml", changed, owner)
	if err != nil || n != 2 || string(back) != handWritten {
		t.Fatalf("revoke left (%d, %v):\n%q", n, err, back)
	}
	// Another app's grants are not ours to touch.
	if _, n, _ := RemoveBlocks("a.toml", changed, "/other"); n != 0 {
		t.Fatal("removed another owner's blocks")
	}
}

func TestSetBlocksRefusesHandWrittenAndNewFile(t *testing.T) {
	_, err := SetBlocks("a.toml", []byte(handWritten), "/app", []Block{{Cell: "tool", Body: "[cell.tool]\nexec = \"/x\"\n"}})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "a.toml:8") {
		t.Fatalf("overwrote a hand-written entry: %v", err)
	}
	out, err := SetBlocks("a.toml", nil, "/app", []Block{{Cell: "x", Body: "[cell.x]\nexec = \"/x\"\n"}})
	if err != nil || !strings.Contains(string(out), "version = 1") {
		t.Fatalf("new file: %v\n%s", err, out)
	}
	if _, err := SetBlocks("a.toml", nil, "/app", []Block{{Cell: "x", Body: "[cell.x]\nexec = \"rel\"\n"}}); err == nil {
		t.Fatal("wrote an invalid allowlist")
	}
	broken := "version = 1\n# >>> cell grant x for /app\n[cell.x]\nexec = \"/x\"\n"
	if _, err := SetBlocks("a.toml", []byte(broken), "/app", nil); err == nil {
		t.Fatal("accepted an unterminated block")
	}
}
