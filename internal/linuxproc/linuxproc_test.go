package linuxproc

import (
	"errors"
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	line := []byte("4242 (a (b) c) S 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0 18446744073709551615\n")
	st, err := ParseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.Comm != "a (b) c" || st.State != 'S' || st.PPid != 1 || st.PGrp != 4242 || st.StartTime != 987654 {
		t.Fatalf("got %+v", st)
	}
	for _, bad := range []string{"", "1 x S 1", "1 (x) S 1 2", "1 (x) SS 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"} {
		if _, err := ParseStat([]byte(bad)); !errors.Is(err, ErrStat) {
			t.Errorf("ParseStat(%q): %v", bad, err)
		}
	}
}

func TestReadStatSelf(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PPid != os.Getppid() || st.StartTime == 0 {
		t.Fatalf("self: %+v", st)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n"))
	f.Add([]byte("7 ()) Z 1 7 7"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseStat(data)
		if err == nil && len(st.Comm) > len(data) {
			t.Fatalf("comm longer than the line: %q", st.Comm)
		}
	})
}
