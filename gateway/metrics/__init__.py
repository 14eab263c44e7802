"""What the gateway's processes use (calls, CPU, memory), for `/stats`. Standard
library only."""
