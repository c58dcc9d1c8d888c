// Package supervisor runs one Cell session: it serves the umbilical, decides
// and launches spawns through a backend it does not know the kind of, keeps the
// tree of cells, tears the whole session down when the owner goes, and
// collects what dead sessions left behind.
package supervisor
