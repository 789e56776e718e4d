"""Hydrology: gauge readings in (river levels, rainfall), flood and flash-flood warnings out.

readings.py  parse gauge data (USGS instantaneous values JSON, the Chinese water-data JSON/CSV shape, the
             ``POST /api/v1/readings`` list) into :class:`Reading` rows
ladder.py    SL 758-2018 river-level ladder with hysteresis: readings → the colour a station should be at
rainfall.py  flash-flood (山洪) rainfall windows per danger zone: 准备转移 / 立即转移
service.py   keeps station and zone state in the database and turns colour changes into CAP
             Alert / Update / Cancel messages run through the normal pipeline
"""
