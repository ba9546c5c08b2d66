"""Datasets: the TFRecord schema, writers, tf.data readers, and other trajectory sources.

- :mod:`.schema`       record format (one ``tf.train.Example`` per frame), SCHEMA_VERSION
- :mod:`.writer`       ``write_dataset`` (MD), ``write_ca_dataset`` (cellular automata)
- :mod:`.statistics`   normalisation statistics stored in metadata.json
- :mod:`.reader`       ``load_metadata``, ``read_trajectories``, ``window_dataset``, ``ca_window_dataset``
- :mod:`.frames`       ``trajectory_from_frames``, ``read_extxyz_trajectory``
- :mod:`.lammps_dump`  ``read_lammps_dump`` (LAMMPS text dumps)
- :mod:`.hdf5_source`  ``read_hdf5_trajectory`` (tensorflow-io), ``write_hdf5_trajectory`` (h5py)

The layout and every feature are documented in docs/DATA_SCHEMA.md.
"""
