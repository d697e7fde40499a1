"""What runs inside a sweep: search spaces as data translated to Hyperopt (``space``) and
one Tune trial (``trial``)."""
