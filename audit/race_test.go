//go:build race

package audit_test

// raceEnabled is true under -race, where the exhaustive tamper loops run
// 10-20 times slower; they then sample offsets (tamperStride).
const raceEnabled = true
