"""What people read: the HTML run report (``report``), the model card pushed beside the model
(``model_card``) and the flat scalars platforms compare runs by (``platform_metrics``). The top
room: it reads the others' results, none reads it."""
