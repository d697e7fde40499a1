"""Weather timeseries tasks (book ch. 6.3): read files (``read``), repair the time axis
(``time_axis``), prepare the normalized array (``prepare``), windows (``windows``), train
(``train``)."""
