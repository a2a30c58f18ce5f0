//go:build !linux

package storage_test

func allAdapters() []adapter {
	return []adapter{{"Memory", newMemory}}
}

func hookedAdapters() []hookedAdapter {
	return []hookedAdapter{{"Memory", false, openHookedMemory}}
}
