"""Text tasks (book ch. 3.4, 6.1): read raw text (``data``), tokenize (``tokenize``),
prepare the study's arrays (``prepare``), GloVe vectors (``glove``), train (``train``)."""
