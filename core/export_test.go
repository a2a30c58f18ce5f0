package core

// Ops lists every operation (for tests that walk the lifecycle table).
func Ops() []Op {
	out := make([]Op, 0, opEnd-1)
	for o := Op(1); o < opEnd; o++ {
		out = append(out, o)
	}
	return out
}
