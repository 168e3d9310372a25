"""The supervision flow and its policy: PIN, rights, target resolution, ChanSpy options."""
