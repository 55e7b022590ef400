"""SAN objects of one emulated ONTAP cluster: LUNs, initiator groups, LUN maps (no HTTP here).

What it models, after NetApp's ONTAP REST documentation (``/storage/luns``,
``/protocols/san/igroups``, ``/protocols/san/lun-maps``):

* Every volume carries one LUN, ``/vol/<volume>/lun0`` unless the volume's config entry says
  otherwise (``"lun": {"name": "data", "os_type": "linux", "size": 1073741824}``). It is made
  with the volume (from the config, by ``POST /storage/volumes``, or as a FlexClone, whose LUN
  is a new LUN: new UUID and serial number, no maps) and goes with it, maps included. A LUN can
  be deleted and created again through the API, but a volume holds at most one (the lab's
  LUN is the volume's data image; ONTAP allows several).
* A LUN's ``serial_number`` is 12 random characters, unique on the cluster, so a SnapMirror
  destination LUN has its own serial; ``status.read_only`` is true while its volume is ``dp``
  (a SnapMirror destination before the break) and false once it is ``rw``.
* A LUN map gives an igroup's initiators access to a LUN under a logical unit number, by
  default the lowest one free for those initiators. A LUN is mapped to an initiator only
  once, and a number is used once per initiator (``lun mapping create``): a second map of
  the same LUN to the same igroup, or to another igroup sharing an initiator, and a number
  already used by one of the igroup's initiators, are refused.
* A mapped LUN or igroup is deleted only with ``allow_delete_while_mapped=true``, which
  deletes its maps; an igroup with ``delete_on_unmap`` goes with its last map.
* SAN POST, PATCH and DELETE are synchronous (201 / 200) as in ONTAP 9.14.1, the release the
  emulator reports; from 9.16.1 ONTAP answers a LUN POST with a job instead.

Cluster configuration (optional, the same dict as volumes and relationships)::

    "igroups": [{"name": "dc2-mbox1", "protocol": "iscsi", "os_type": "linux",
                 "initiators": ["iqn.2026-01.test.example:dc2-mbox1"]}],
    "lun_maps": [{"lun": "/vol/mbox1_db/lun0", "igroup": "dc2-mbox1",
                  "logical_unit_number": 0}]

``logical_unit_number`` is optional there too.
"""

from __future__ import annotations

import re
import secrets
import string
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.ontap.state import Cluster

from lab.ontap.state import E_DUPLICATE, E_INVALID_INPUT, E_NOT_FOUND, ApiError, iso, now

# Error codes from NetApp's ONTAP REST docs (DELETE /storage/luns/{uuid},
# DELETE /protocols/san/igroups/{uuid}, DELETE /protocols/san/lun-maps/{lun.uuid}/{igroup.uuid}).
E_LUN_MAPPED = "1254197"  # the LUN is mapped and allow_delete_while_mapped was not given
E_IGROUP_MAPPED = "1254213"  # the igroup is mapped and allow_delete_while_mapped was not given
E_IGROUP_NOT_FOUND = "5374852"  # the igroup does not exist
E_LUN_NOT_FOUND = "5374875"  # the LUN does not exist (documented for DELETE of a LUN or a map)
E_MAP_IGROUP_NOT_FOUND = "5374878"  # the map's igroup does not exist (documented for DELETE of a map)
E_MAP_NOT_FOUND = "5374922"  # the LUN map does not exist
# The emulator's choice (unverified): a second map of a LUN to an initiator answers
# E_DUPLICATE ("1", as for other duplicates), a logical unit number already used answers:
E_LUN_ID_IN_USE = "5374900"  # unverified

DEFAULT_LUN = "lun0"
DEFAULT_LUN_SIZE = 1 << 30  # 1 GiB: the emulator's choice
DEFAULT_OS_TYPE = "linux"
MAX_LUN_ID = 4095
SERIAL_CHARS = string.ascii_letters + string.digits + "+"  # "+" as in NetApp's examples
LUN_OS_TYPES = {
    "aix", "hpux", "hyper_v", "linux", "netware", "openvms", "solaris", "solaris_efi",
    "vmware", "windows", "windows_2008", "windows_gpt", "xen",
}  # fmt: skip
IGROUP_OS_TYPES = {"aix", "hpux", "hyper_v", "linux", "netware", "openvms", "solaris", "vmware", "windows", "xen"}
PROTOCOLS = {"iscsi", "fcp", "mixed"}
IQN = re.compile(r"^(iqn\.\d{4}-\d{2}\.[^\s:]+(:\S+)?|eui\.[0-9a-fA-F]{16})$")
WWPN = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){7}$")
SIZE = re.compile(r"^(\d+)\s*([KMGTP]?)B?$", re.IGNORECASE)


@dataclass
class Lun:
    uuid: str
    volume: str
    logical_unit: str
    serial: str
    os_type: str = DEFAULT_OS_TYPE
    size: int = DEFAULT_LUN_SIZE
    enabled: bool = True
    comment: str = ""
    create_time: float = field(default_factory=now)

    @property
    def name(self) -> str:
        return f"/vol/{self.volume}/{self.logical_unit}"


@dataclass
class Igroup:
    uuid: str
    name: str
    os_type: str
    protocol: str = "mixed"
    initiators: list[str] = field(default_factory=list)
    comment: str = ""
    delete_on_unmap: bool = False


@dataclass
class LunMap:
    lun: str  # LUN uuid
    igroup: str  # igroup uuid
    number: int


def split_lun_path(path: str) -> tuple[str, str]:
    """``/vol/<volume>/<lun>`` -> (volume, lun); the lab has no qtrees."""
    parts = path.split("/") if isinstance(path, str) else []
    if len(parts) != 4 or parts[0] or parts[1] != "vol" or not parts[2] or not parts[3]:
        raise ApiError(400, E_INVALID_INPUT, f'Invalid LUN name "{path}": expected "/vol/<volume>/<lun>"', "name")
    return parts[2], parts[3]


def parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ApiError(400, E_INVALID_INPUT, f'Invalid value "{value}" for space.size', "space.size")
    if isinstance(value, int):
        size = value
    else:
        m = SIZE.match(str(value).strip())
        if not m:
            raise ApiError(400, E_INVALID_INPUT, f'Invalid value "{value}" for space.size', "space.size")
        size = int(m.group(1)) << (10 * " KMGTP".index(m.group(2).upper() or " "))
    if size <= 0:
        raise ApiError(400, E_INVALID_INPUT, "space.size must be positive", "space.size")
    return size


def _ref(body: dict, key: str) -> tuple[str | None, str | None]:
    ref = body.get(key) or {}
    if not isinstance(ref, dict):
        raise ApiError(400, E_INVALID_INPUT, f'"{key}" must be an object', key)
    return ref.get("name"), ref.get("uuid")


class San:
    """The SAN objects of a ``Cluster``; shares its lock and its persistence."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.luns: dict[str, Lun] = {}
        self.igroups: dict[str, Igroup] = {}
        self.maps: list[LunMap] = []

    # ------------------------------------------------------------------ set-up, persistence
    def clear(self) -> None:
        self.luns.clear()
        self.igroups.clear()
        self.maps.clear()

    def initialise(self, config: dict) -> None:
        """Igroups and maps from the cluster config (the LUNs came with the volumes)."""
        for spec in config.get("igroups", []):
            self.create_igroup({**spec, "svm": {"name": self.cluster.svm}})
        for spec in config.get("lun_maps", []):
            body: dict[str, Any] = {"lun": {"name": spec["lun"]}, "igroup": {"name": spec["igroup"]}}
            if spec.get("logical_unit_number") is not None:
                body["logical_unit_number"] = spec["logical_unit_number"]
            self.create_map(body | {"svm": {"name": self.cluster.svm}})

    def dump(self) -> dict:
        return {
            "luns": [asdict(lun) for lun in self.luns.values()],
            "igroups": [asdict(ig) for ig in self.igroups.values()],
            "lun_maps": [asdict(m) for m in self.maps],
        }

    def load(self, data: dict | None) -> None:
        """Restore a dump; a state written before LUNs existed gets one per volume."""
        data = data or {}
        self.luns = {d["uuid"]: Lun(**d) for d in data.get("luns", [])}
        self.igroups = {d["uuid"]: Igroup(**d) for d in data.get("igroups", [])}
        self.maps = [LunMap(**d) for d in data.get("lun_maps", [])]
        if "luns" not in data:
            for name in self.cluster.volumes:
                self.add_volume_lun(name)

    # ------------------------------------------------------------------ volume life cycle
    def _new_serial(self) -> str:
        used = {lun.serial for lun in self.luns.values()}
        while True:
            serial = "".join(secrets.choice(SERIAL_CHARS) for _ in range(12))
            if serial not in used:
                return serial

    def add_volume_lun(self, volume: str, spec: dict | None = None, parent: str | None = None) -> Lun:
        """The LUN a new volume carries; a clone's copies its parent's name, type and size."""
        template = self.volume_lun(parent) if parent else None
        spec = spec or {}
        lun = Lun(
            uuid=str(uuidlib.uuid4()),
            volume=volume,
            logical_unit=spec.get("name") or (template.logical_unit if template else DEFAULT_LUN),
            serial=self._new_serial(),
            os_type=spec.get("os_type") or (template.os_type if template else DEFAULT_OS_TYPE),
            size=parse_size(spec["size"]) if spec.get("size") else (template.size if template else DEFAULT_LUN_SIZE),
        )
        self.luns[lun.uuid] = lun
        return lun

    def drop_volume(self, volume: str) -> None:
        """A deleted volume takes its LUN and the LUN's maps with it."""
        for lun in [lun for lun in self.luns.values() if lun.volume == volume]:
            self._remove_lun(lun)

    def volume_lun(self, volume: str | None) -> Lun | None:
        return next((lun for lun in self.luns.values() if lun.volume == volume), None)

    def _remove_lun(self, lun: Lun) -> None:
        for m in [m for m in self.maps if m.lun == lun.uuid]:
            self._remove_map(m)
        self.luns.pop(lun.uuid, None)

    # ------------------------------------------------------------------ look-ups
    def _check_svm(self, body: dict) -> None:
        name, svm_uuid = _ref(body, "svm")
        if not name and not svm_uuid:
            raise ApiError(400, E_INVALID_INPUT, 'Field "svm.name" or "svm.uuid" is required', "svm.name")
        if (name and name != self.cluster.svm) or (svm_uuid and svm_uuid != self.cluster.svm_uuid):
            raise ApiError(404, E_NOT_FOUND, f'SVM "{name or svm_uuid}" does not exist', "svm.name")

    def get_lun(self, lun_uuid: str, code: str = E_NOT_FOUND) -> Lun:
        lun = self.luns.get(lun_uuid)
        if lun is None:
            raise ApiError(404, code, "entry doesn't exist", "uuid")
        return lun

    def get_igroup(self, igroup_uuid: str, code: str = E_NOT_FOUND) -> Igroup:
        ig = self.igroups.get(igroup_uuid)
        if ig is None:
            raise ApiError(404, code, "entry doesn't exist", "uuid")
        return ig

    def get_map(self, lun_uuid: str, igroup_uuid: str, code: str = E_NOT_FOUND) -> LunMap:
        m = next((m for m in self.maps if (m.lun, m.igroup) == (lun_uuid, igroup_uuid)), None)
        if m is None:
            raise ApiError(404, code, "entry doesn't exist", "uuid")
        return m

    def _find_lun(self, body: dict) -> Lun:
        name, lun_uuid = _ref(body, "lun")
        found = self.luns.get(lun_uuid) if lun_uuid else next((x for x in self.luns.values() if x.name == name), None)
        if found is None or (name and found.name != name):
            raise ApiError(404, E_LUN_NOT_FOUND, f'LUN "{name or lun_uuid}" does not exist', "lun.name")
        return found

    def _find_igroup(self, body: dict) -> Igroup:
        name, ig_uuid = _ref(body, "igroup")
        found = (
            self.igroups.get(ig_uuid) if ig_uuid else next((x for x in self.igroups.values() if x.name == name), None)
        )
        if found is None or (name and found.name != name):
            raise ApiError(
                404, E_MAP_IGROUP_NOT_FOUND, f'Initiator group "{name or ig_uuid}" does not exist', "igroup.name"
            )
        return found

    # ------------------------------------------------------------------ LUNs
    def create_lun(self, body: dict) -> Lun:
        with self.cluster.lock:
            self._check_svm(body)
            location = body.get("location") or {}
            vol_ref = location.get("volume") or {}
            volume, unit = None, location.get("logical_unit")
            if body.get("name"):
                volume, unit = split_lun_path(body["name"])
            ref_name, ref_uuid = vol_ref.get("name"), vol_ref.get("uuid")
            if ref_uuid:
                by_uuid = next((v.name for v in self.cluster.volumes.values() if v.uuid == ref_uuid), None)
                if by_uuid is None:
                    raise ApiError(404, E_NOT_FOUND, f'Volume "{ref_uuid}" does not exist', "location.volume.uuid")
                ref_name = ref_name or by_uuid
                if ref_name != by_uuid:
                    raise ApiError(400, E_INVALID_INPUT, "location.volume name and uuid differ", "location.volume")
            if ref_name:
                if volume and volume != ref_name:
                    raise ApiError(400, E_INVALID_INPUT, "name and location.volume name different volumes", "name")
                volume = ref_name
            if not volume or not unit:
                raise ApiError(400, E_INVALID_INPUT, 'Field "name" is required', "name")
            vol = self.cluster.volumes.get(volume)
            if vol is None:
                raise ApiError(404, E_NOT_FOUND, f'Volume "{volume}" does not exist', "location.volume.name")
            os_type = body.get("os_type")
            if os_type not in LUN_OS_TYPES:
                raise ApiError(400, E_INVALID_INPUT, 'Field "os_type" is required and must be valid', "os_type")
            if "size" not in (body.get("space") or {}):
                raise ApiError(400, E_INVALID_INPUT, 'Field "space.size" is required', "space.size")
            size = parse_size(body["space"]["size"])
            existing = self.volume_lun(volume)
            if existing is not None:
                if existing.logical_unit == unit:
                    raise ApiError(409, E_DUPLICATE, f'LUN "{existing.name}" already exists', "name")
                raise ApiError(
                    400, E_INVALID_INPUT, f'Volume "{volume}" already holds LUN "{existing.name}" (lab: one per volume)'
                )
            if vol.type == "dp":
                raise ApiError(400, E_INVALID_INPUT, f'Volume "{volume}" is read-only (a SnapMirror destination)')
            lun = Lun(
                uuid=str(uuidlib.uuid4()),
                volume=volume,
                logical_unit=unit,
                serial=self._new_serial(),
                os_type=os_type,
                size=size,
                comment=str(body.get("comment") or ""),
            )
            self.luns[lun.uuid] = lun
            self.cluster._save()
            return lun

    def patch_lun(self, lun_uuid: str, body: dict) -> None:
        allowed = {"enabled", "comment", "name", "location", "space"}
        with self.cluster.lock:
            lun = self.get_lun(lun_uuid, E_LUN_NOT_FOUND)
            for key in body:
                if key not in allowed:
                    raise ApiError(400, E_INVALID_INPUT, f'Field "{key}" cannot be modified by the emulator', key)
            unit = lun.logical_unit
            if body.get("name"):
                volume, unit = split_lun_path(body["name"])
                if volume != lun.volume:
                    raise ApiError(400, E_INVALID_INPUT, "Moving a LUN to another volume is not emulated", "name")
            location = body.get("location") or {}
            if (location.get("volume") or {}).get("name") not in (None, lun.volume):
                raise ApiError(400, E_INVALID_INPUT, "Moving a LUN to another volume is not emulated", "location")
            unit = location.get("logical_unit") or unit
            size = parse_size(body["space"]["size"]) if "size" in (body.get("space") or {}) else lun.size
            if (unit != lun.logical_unit or size != lun.size) and self._read_only(lun):
                raise ApiError(400, E_INVALID_INPUT, f'LUN "{lun.name}" is read-only (a SnapMirror destination)')
            if "enabled" in body:
                if not isinstance(body["enabled"], bool):
                    raise ApiError(400, E_INVALID_INPUT, '"enabled" must be a boolean', "enabled")
                lun.enabled = body["enabled"]
            if "comment" in body:
                lun.comment = str(body["comment"] or "")
            lun.logical_unit, lun.size = unit, size
            self.cluster._save()

    def delete_lun(self, lun_uuid: str, allow_mapped: bool = False) -> None:
        with self.cluster.lock:
            lun = self.get_lun(lun_uuid, E_LUN_NOT_FOUND)
            if not allow_mapped and any(m.lun == lun.uuid for m in self.maps):
                raise ApiError(
                    400,
                    E_LUN_MAPPED,
                    f'LUN "{lun.name}" is mapped and cannot be deleted without allow_delete_while_mapped',
                )
            self._remove_lun(lun)
            self.cluster._save()

    def _read_only(self, lun: Lun) -> bool:
        vol = self.cluster.volumes.get(lun.volume)
        return vol is not None and vol.type == "dp"

    def render_lun(self, lun: Lun) -> dict:
        vol = self.cluster.volumes.get(lun.volume)
        maps = [m for m in self.maps if m.lun == lun.uuid]
        rec: dict[str, Any] = {
            "uuid": lun.uuid,
            "name": lun.name,
            "class": "regular",
            "location": {
                "logical_unit": lun.logical_unit,
                "volume": {
                    "name": lun.volume,
                    "uuid": vol.uuid if vol else None,
                    "_links": {"self": {"href": f"/api/storage/volumes/{vol.uuid if vol else ''}"}},
                },
            },
            "svm": {"name": self.cluster.svm, "uuid": self.cluster.svm_uuid},
            "os_type": lun.os_type,
            "serial_number": lun.serial,
            "enabled": lun.enabled,
            "space": {"size": lun.size},
            "status": {
                "state": "online" if lun.enabled else "offline",
                "container_state": "online",
                "read_only": self._read_only(lun),
                "mapped": bool(maps),
            },
            "create_time": iso(lun.create_time),
            "lun_maps": [
                {
                    "igroup": self._igroup_ref(self.igroups[m.igroup]),
                    "logical_unit_number": m.number,
                    "_links": {"self": {"href": self._map_href(m)}},
                }
                for m in maps
            ],
            "_links": {"self": {"href": f"/api/storage/luns/{lun.uuid}"}},
        }
        if lun.comment:
            rec["comment"] = lun.comment
        return rec

    def lun_records(self) -> list[dict]:
        with self.cluster.lock:
            return [self.render_lun(lun) for lun in sorted(self.luns.values(), key=lambda x: x.name)]

    # ------------------------------------------------------------------ igroups
    def _initiators(self, protocol: str, raw: Any) -> list[str]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise ApiError(400, E_INVALID_INPUT, '"initiators" must be a list', "initiators")
        names: list[str] = []
        for item in raw:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str):
                raise ApiError(400, E_INVALID_INPUT, "Each initiator needs a name", "initiators.name")
            iscsi, fc = bool(IQN.match(name)), bool(WWPN.match(name))
            if not (iscsi or fc) or (protocol == "iscsi" and not iscsi) or (protocol == "fcp" and not fc):
                message = f'Initiator "{name}" is not valid for protocol "{protocol}"'
                raise ApiError(400, E_INVALID_INPUT, message, "initiators.name")
            if name not in names:
                names.append(name)
        return names

    def create_igroup(self, body: dict) -> Igroup:
        with self.cluster.lock:
            self._check_svm(body)
            name = body.get("name")
            if not name or not isinstance(name, str):
                raise ApiError(400, E_INVALID_INPUT, 'Field "name" is required', "name")
            if body.get("os_type") not in IGROUP_OS_TYPES:
                raise ApiError(400, E_INVALID_INPUT, 'Field "os_type" is required and must be valid', "os_type")
            protocol = body.get("protocol") or "mixed"
            if protocol not in PROTOCOLS:
                raise ApiError(400, E_INVALID_INPUT, f'Invalid protocol "{protocol}"', "protocol")
            if any(ig.name == name for ig in self.igroups.values()):
                raise ApiError(409, E_DUPLICATE, f'Initiator group "{name}" already exists', "name")
            ig = Igroup(
                uuid=str(uuidlib.uuid4()),
                name=name,
                os_type=body["os_type"],
                protocol=protocol,
                initiators=self._initiators(protocol, body.get("initiators")),
                comment=str(body.get("comment") or ""),
                delete_on_unmap=bool(body.get("delete_on_unmap", False)),
            )
            self.igroups[ig.uuid] = ig
            self.cluster._save()
            return ig

    def patch_igroup(self, igroup_uuid: str, body: dict) -> None:
        with self.cluster.lock:
            ig = self.get_igroup(igroup_uuid, E_IGROUP_NOT_FOUND)
            for key in body:
                if key not in ("name", "os_type", "comment", "delete_on_unmap"):
                    raise ApiError(400, E_INVALID_INPUT, f'Field "{key}" cannot be modified', key)
            if "name" in body:
                if not body["name"] or not isinstance(body["name"], str):
                    raise ApiError(400, E_INVALID_INPUT, 'Invalid value for "name"', "name")
                if any(o.name == body["name"] and o is not ig for o in self.igroups.values()):
                    raise ApiError(409, E_DUPLICATE, f'Initiator group "{body["name"]}" already exists', "name")
                ig.name = body["name"]
            if "os_type" in body:
                if body["os_type"] not in IGROUP_OS_TYPES:
                    raise ApiError(400, E_INVALID_INPUT, f'Invalid os_type "{body["os_type"]}"', "os_type")
                ig.os_type = body["os_type"]
            if "comment" in body:
                ig.comment = str(body["comment"] or "")
            if "delete_on_unmap" in body:
                ig.delete_on_unmap = bool(body["delete_on_unmap"])
            self.cluster._save()

    def delete_igroup(self, igroup_uuid: str, allow_mapped: bool = False) -> None:
        with self.cluster.lock:
            ig = self.get_igroup(igroup_uuid, E_IGROUP_NOT_FOUND)
            mapped = [m for m in self.maps if m.igroup == ig.uuid]
            if mapped and not allow_mapped:
                raise ApiError(
                    400,
                    E_IGROUP_MAPPED,
                    f'Initiator group "{ig.name}" is mapped to one or more LUNs and '
                    "allow_delete_while_mapped has not been specified",
                )
            self.maps = [m for m in self.maps if m.igroup != ig.uuid]
            self.igroups.pop(ig.uuid, None)
            self.cluster._save()

    @staticmethod
    def _igroup_ref(ig: Igroup) -> dict:
        return {"name": ig.name, "uuid": ig.uuid, "_links": {"self": {"href": f"/api/protocols/san/igroups/{ig.uuid}"}}}

    def render_igroup(self, ig: Igroup) -> dict:
        rec: dict[str, Any] = {
            "uuid": ig.uuid,
            "name": ig.name,
            "svm": {"name": self.cluster.svm, "uuid": self.cluster.svm_uuid},
            "protocol": ig.protocol,
            "os_type": ig.os_type,
            "delete_on_unmap": ig.delete_on_unmap,
            "initiators": [
                {
                    "name": name,
                    "_links": {"self": {"href": f"/api/protocols/san/igroups/{ig.uuid}/initiators/{name}"}},
                }
                for name in ig.initiators
            ],
            "lun_maps": [
                {
                    "lun": self._lun_ref(self.luns[m.lun]),
                    "logical_unit_number": m.number,
                    "_links": {"self": {"href": self._map_href(m)}},
                }
                for m in self.maps
                if m.igroup == ig.uuid
            ],
            "_links": {"self": {"href": f"/api/protocols/san/igroups/{ig.uuid}"}},
        }
        if ig.comment:
            rec["comment"] = ig.comment
        return rec

    def igroup_records(self) -> list[dict]:
        with self.cluster.lock:
            return [self.render_igroup(ig) for ig in sorted(self.igroups.values(), key=lambda x: x.name)]

    # ------------------------------------------------------------------ LUN maps
    def _sharing(self, ig: Igroup) -> set[str]:
        """Igroups that share an initiator with ``ig``, ``ig`` included."""
        mine = set(ig.initiators)
        return {o.uuid for o in self.igroups.values() if o is ig or mine & set(o.initiators)}

    def create_map(self, body: dict) -> LunMap:
        with self.cluster.lock:
            self._check_svm(body)
            lun = self._find_lun(body)
            ig = self._find_igroup(body)
            number = body.get("logical_unit_number")
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= MAX_LUN_ID
            ):
                raise ApiError(
                    400,
                    E_INVALID_INPUT,
                    f"logical_unit_number must be an integer from 0 to {MAX_LUN_ID}",
                    "logical_unit_number",
                )
            sharing = self._sharing(ig)
            for m in self.maps:
                if m.lun == lun.uuid and m.igroup in sharing:
                    other = self.igroups[m.igroup].name
                    raise ApiError(
                        409, E_DUPLICATE, f'LUN "{lun.name}" is already mapped to initiator group "{other}"', "lun"
                    )
            used = {m.number for m in self.maps if m.igroup in sharing}
            if number is None:
                number = next((n for n in range(MAX_LUN_ID + 1) if n not in used), None)
                if number is None:
                    raise ApiError(409, E_LUN_ID_IN_USE, f'No logical unit number is free for "{ig.name}"')
            if number in used:
                raise ApiError(
                    409,
                    E_LUN_ID_IN_USE,
                    f'Logical unit number {number} is already in use for the initiators of "{ig.name}"',
                    "logical_unit_number",
                )
            m = LunMap(lun=lun.uuid, igroup=ig.uuid, number=number)
            self.maps.append(m)
            self.cluster._save()
            return m

    def delete_map(self, lun_uuid: str, igroup_uuid: str) -> None:
        with self.cluster.lock:
            self.get_lun(lun_uuid, E_LUN_NOT_FOUND)
            self.get_igroup(igroup_uuid, E_MAP_IGROUP_NOT_FOUND)
            self._remove_map(self.get_map(lun_uuid, igroup_uuid, E_MAP_NOT_FOUND))
            self.cluster._save()

    def _remove_map(self, m: LunMap) -> None:
        self.maps = [x for x in self.maps if x is not m]
        ig = self.igroups.get(m.igroup)
        if ig and ig.delete_on_unmap and not any(x.igroup == ig.uuid for x in self.maps):
            self.igroups.pop(ig.uuid, None)

    @staticmethod
    def _map_href(m: LunMap) -> str:
        return f"/api/protocols/san/lun-maps/{m.lun}/{m.igroup}"

    @staticmethod
    def _lun_ref(lun: Lun) -> dict:
        return {"name": lun.name, "uuid": lun.uuid, "_links": {"self": {"href": f"/api/storage/luns/{lun.uuid}"}}}

    def render_map(self, m: LunMap) -> dict:
        ig = self.igroups[m.igroup]
        return {
            "svm": {"name": self.cluster.svm, "uuid": self.cluster.svm_uuid},
            "lun": self._lun_ref(self.luns[m.lun]),
            "igroup": {
                **self._igroup_ref(ig),
                "protocol": ig.protocol,
                "os_type": ig.os_type,
                "initiators": list(ig.initiators),
            },
            "logical_unit_number": m.number,
            "_links": {"self": {"href": self._map_href(m)}},
        }

    def map_records(self) -> list[dict]:
        with self.cluster.lock:
            return [self.render_map(m) for m in self.maps]
