"""Hardware-in-the-loop: the serial link, board sessions, closed-loop episodes and checks."""
