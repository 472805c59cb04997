//! Prompt generation from the specialist's prediction (boxes, points).
