// Package tests holds integration tests: they start real controllers and
// agents (the stockade binary, as separate processes), submit real jobs
// through the CLI and the API, and kill processes to prove nothing is lost.
package tests
