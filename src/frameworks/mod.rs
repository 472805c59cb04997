//! Semi-supervised frameworks (supervised, Mean Teacher, UA-MT) behind one trait.
