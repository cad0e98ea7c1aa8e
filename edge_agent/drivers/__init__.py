"""Hardware protocols: Modbus register maps and buses, box frames, card readers: bytes only."""
