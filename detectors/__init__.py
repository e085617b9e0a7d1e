"""Pure online statistics: drift tests, window aggregates, performance, fidelity, change detectors. No I/O."""
