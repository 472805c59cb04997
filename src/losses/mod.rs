//! Loss functions (CE, Dice, consistency, SAM term).
