/* migrationd's Cockpit page.
 *
 * Everything comes from migrationd's D-Bus API on the system bus through
 * cockpit.dbus(): Guest1 and Migration1 objects are watched with proxies
 * (ObjectManager + PropertiesChanged), so the progress bars move only when
 * the daemon signals a change; nothing is polled. Calls that change
 * something carry the interactive-authorization flag, so polkit asks
 * through Cockpit's own agent when it needs a password. */
"use strict";

(function () {
    const _ = cockpit.gettext;
    const BUS_NAME = "org.migrationd";
    const ROOT = "/org/migrationd";
    const MANAGER = "org.migrationd.Manager1";
    const GUEST = "org.migrationd.Guest1";
    const MIGRATION = "org.migrationd.Migration1";
    const TERMINAL = ["completed", "failed", "cancelled"];

    /* D-Bus types of the Guest1.Migrate options this page knows
     * (introspection/org.migrationd.Guest1.xml). Options the daemon
     * announces in Capabilities ("option:NAME") that are not in the main
     * form appear under "More options". */
    const OPTION_TYPES = {
        live: "b",
        offline: "b",
        tls: "b",
        bandwidth: "t",
        "max-downtime": "t",
        "auto-converge": "b",
        postcopy: "b",
        "parallel-connections": "u",
        compression: "s",
        "persist-destination": "b",
        "undefine-source": "b",
        "destination-xml": "s",
        "destination-name": "s",
        "migration-address": "s",
        "migration-port": "q",
        "paused-on-destination": "b",
        "abort-after": "u",
        "copy-storage": "s",
        disks: "as",
        "nbd-port": "q",
        "nbd-address": "s",
        verify: "b",
    };
    const MAIN_FORM = ["live", "offline", "copy-storage", "bandwidth", "postcopy",
        "auto-converge", "persist-destination", "undefine-source"];

    let client = null;
    let manager = null;
    let guests = null;
    let migrations = null;
    let capabilities = [];
    let dialogGuest = null;
    const watched = new Set();
    const dismissed = new Set();

    /* ---- formatting ---- */

    function formatBytes(n) {
        const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
        let i = 0;
        n = Number(n) || 0;
        while (n >= 1024 && i < units.length - 1) {
            n /= 1024;
            i++;
        }
        return i === 0 ? n + " " + units[0] : n.toFixed(1) + " " + units[i];
    }

    function formatRate(n) {
        return formatBytes(n) + "/s";
    }

    function formatSeconds(s) {
        s = Math.max(0, Math.round(s));
        if (s < 60)
            return s + " s";
        if (s < 3600)
            return Math.floor(s / 60) + " min " + (s % 60) + " s";
        return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    }

    /* µs since the epoch -> local date and time. */
    function formatTime(us) {
        if (!us)
            return "";
        return new Date(Number(us) / 1000).toLocaleString();
    }

    function el(tag, attrs, children) {
        const node = document.createElement(tag);
        for (const key in attrs || {}) {
            if (key === "class")
                node.className = attrs[key];
            else if (key === "text")
                node.textContent = attrs[key];
            else if (key.startsWith("on"))
                node.addEventListener(key.slice(2), attrs[key]);
            else
                node.setAttribute(key, attrs[key]);
        }
        for (const child of children || []) {
            if (child !== null && child !== undefined)
                node.append(child);
        }
        return node;
    }

    function errorText(ex) {
        /* cockpit.dbus errors carry the D-Bus error name and message. */
        if (ex && ex.name && ex.message)
            return ex.name + ": " + ex.message;
        return cockpit.message(ex);
    }

    function showPageError(text) {
        const p = document.getElementById("page-error");
        p.textContent = text || "";
        p.hidden = !text;
    }

    /* A call that may change something: polkit may ask for a password. */
    function callChanging(path, iface, method, args, signature) {
        return client.call(path, iface, method, args, { type: signature, flags: "i" });
    }

    /* ---- guests ---- */

    function guestAction(proxy, method) {
        /* Shutdown waits for the guest as long as the daemon's configured
         * shutdown-timeout, then reports a guest that ignored the request. */
        showPageError("");
        return callChanging(proxy.path, GUEST, method, [{}], "a{sv}")
                .catch(ex => showPageError(cockpit.format(_("Cannot $0 $1: $2"),
                                                          method === "Shutdown" ? _("shut down") : _("start"), proxy.Name,
                                                          errorText(ex))));
    }

    function renderGuests() {
        const body = document.querySelector("#guests tbody");
        const rows = [];
        const list = Object.values(guests || {}).filter(g => g.valid && g.Name);
        list.sort((a, b) => a.Name.localeCompare(b.Name));
        for (const g of list) {
            const running = g.State !== "shut-off";
            const busy = g.Migration && g.Migration !== "/";
            const actions = el("td", { class: "actions" }, [
                el("button", {
                    class: "start", text: _("Start"), onclick: () => guestAction(g, "Start"),
                }),
                el("button", {
                    class: "shutdown", text: _("Shut down"), onclick: () => guestAction(g, "Shutdown"),
                }),
                el("button", {
                    class: "migrate primary", text: _("Migrate…"), onclick: () => openMigrateDialog(g),
                }),
            ]);
            actions.querySelector(".start").disabled = running || busy;
            actions.querySelector(".shutdown").disabled = !running || busy;
            actions.querySelector(".migrate").disabled = busy;
            rows.push(el("tr", { "data-guest": g.Name }, [
                el("td", { class: "name", text: g.Name }),
                el("td", { class: "state state-" + g.State, text: g.State }),
                el("td", { text: formatBytes(g.Memory) }),
                el("td", { text: String(g.VCPUs) }),
                actions,
            ]));
        }
        body.replaceChildren(...rows);
        document.getElementById("guests-empty").hidden = rows.length > 0;
    }

    /* ---- migrations ---- */

    function migrationTitle(m) {
        const arrow = m.Direction === "incoming" ? " ← " : " → ";
        return m.GuestName + arrow + m.Peer;
    }

    function progressFacts(m) {
        const facts = [];
        function fact(cls, label, value) {
            facts.push(el("span", { class: cls }, [el("b", { text: label + " " }), value]));
        }
        fact("phase", _("Phase"), m.Phase);
        fact("state", _("State"), m.State);
        /* An offline migration moves disks only: no memory numbers. */
        if (m.MemoryTotal > 0)
            fact("memory", _("Memory"), formatBytes(m.MemoryProcessed) + " / " + formatBytes(m.MemoryTotal));
        if (m.DiskTotal > 0)
            fact("disk", _("Disks"), formatBytes(m.DiskProcessed) + " / " + formatBytes(m.DiskTotal));
        if (m.Rate > 0)
            fact("rate", _("Rate"), formatRate(m.Rate));
        if (m.DiskRate > 0)
            fact("disk-rate", _("Disk rate"), formatRate(m.DiskRate));
        if (m.ExpectedEndTime > 0)
            fact("eta", _("ETA"), formatSeconds(m.ExpectedEndTime / 1e6 - Date.now() / 1000));
        if (m.Iteration > 0) {
            let step = cockpit.format(_("pass $0"), m.Iteration);
            if (m.DirtyRate > 0)
                step += ", " + cockpit.format(_("guest dirties $0"), formatRate(m.DirtyRate));
            if (m.ExpectedDowntime > 0)
                step += ", " + cockpit.format(_("expected downtime $0 ms"), m.ExpectedDowntime);
            fact("convergence", _("Convergence"), step);
        }
        return facts;
    }

    function updateCard(card, m) {
        const percent = m.ProgressValid ? Math.floor(m.Progress * 100) : 0;
        card.querySelector(".title").textContent = migrationTitle(m);
        card.querySelector(".fill").style.width = percent + "%";
        card.querySelector(".label").textContent = m.ProgressValid ? percent + " %" : _("starting…");
        card.querySelector(".bar").setAttribute("aria-valuenow", String(percent));
        card.querySelector(".facts").replaceChildren(...progressFacts(m));
        const ended = TERMINAL.includes(m.State);
        card.classList.toggle("ended", ended);
        card.classList.toggle("ok", ended && m.State === "completed");
        card.classList.toggle("bad", ended && m.State !== "completed");
        card.querySelector(".cancel").hidden = m.Direction !== "outgoing" || ended;
        card.querySelector(".dismiss").hidden = !ended;
        const error = card.querySelector(".error");
        error.textContent = m.ErrorName ? m.ErrorName + "\n" + m.ErrorMessage : "";
        error.hidden = !m.ErrorName;
    }

    function makeCard(m) {
        const card = el("div", { class: "migration", "data-path": m.path }, [
            el("div", { class: "title" }),
            el("div", {
                class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
            }, [el("div", { class: "fill" }), el("div", { class: "label" })]),
            el("div", { class: "facts" }),
            el("p", { class: "error", hidden: "" }),
            el("button", {
                class: "dismiss",
                text: _("Dismiss"),
                onclick: () => {
                    dismissed.add(m.path);
                    renderMigrations();
                },
            }),
            el("button", {
                class: "cancel danger",
                text: _("Cancel"),
                onclick: ev => {
                    ev.target.disabled = true;
                    callChanging(m.path, MIGRATION, "Cancel", [{}], "a{sv}")
                            .catch(ex => {
                                ev.target.disabled = false;
                                showPageError(cockpit.format(_("Cannot cancel the migration of $0: $1"),
                                                             m.GuestName, errorText(ex)));
                            });
                },
            }),
        ]);
        return card;
    }

    function historyRow(m) {
        const seconds = m.EndTime > m.StartTime ? (m.EndTime - m.StartTime) / 1e6 : 0;
        const error = m.ErrorName ? m.ErrorName + "\n" + m.ErrorMessage : "";
        return el("tr", { "data-path": m.path }, [
            el("td", { text: formatTime(m.StartTime) }),
            el("td", { text: m.GuestName }),
            el("td", { text: m.Direction }),
            el("td", { text: m.Peer }),
            el("td", { class: "result result-" + m.State, text: m.State }),
            el("td", { text: formatSeconds(seconds) }),
            el("td", { text: formatBytes(Number(m.MemoryProcessed) + Number(m.DiskProcessed)) }),
            el("td", { class: "error", text: error }),
        ]);
    }

    function renderMigrations() {
        const active = document.getElementById("active");
        const list = Object.values(migrations || {}).filter(m => m.valid && m.State);
        /* A migration this page saw running keeps its card, with the
         * result, until dismissed: its end is what the admin waited for. */
        for (const m of list) {
            if (!TERMINAL.includes(m.State))
                watched.add(m.path);
        }
        const running = list.filter(m => watched.has(m.path) && !dismissed.has(m.path));
        const done = list.filter(m => TERMINAL.includes(m.State));
        const cards = {};
        for (const card of active.querySelectorAll(".migration"))
            cards[card.getAttribute("data-path")] = card;
        running.sort((a, b) => a.StartTime - b.StartTime);
        const keep = running.map(m => {
            const card = cards[m.path] || makeCard(m);
            updateCard(card, m);
            return card;
        });
        active.replaceChildren(...keep);
        document.getElementById("active-empty").hidden = keep.length > 0;

        done.sort((a, b) => b.StartTime - a.StartTime);
        document.querySelector("#history tbody").replaceChildren(...done.map(historyRow));
        document.getElementById("history-empty").hidden = done.length > 0;
    }

    /* ---- the Migrate dialog ---- */

    function hasCap(cap) {
        return capabilities.includes(cap);
    }

    function extraOptionInput(name, type) {
        const id = "extra-" + name;
        if (type === "b") {
            /* Three states: the daemon's default may be true (tls), so an
             * unticked box must not pretend to mean "no". */
            return el("label", {}, [name, el("select", { id, "data-option": name }, [
                el("option", { value: "", text: _("default") }),
                el("option", { value: "true", text: _("yes") }),
                el("option", { value: "false", text: _("no") }),
            ])]);
        }
        const input = el("input", {
            type: type === "s" || type === "as" ? "text" : "number",
            id,
            "data-option": name,
            placeholder: type === "as" ? _("comma-separated") : "",
        });
        return el("label", {}, [name, input]);
    }

    function renderOptionControls() {
        for (const node of document.querySelectorAll("#migrate-form [data-cap]"))
            node.hidden = !hasCap(node.getAttribute("data-cap"));
        const extra = [];
        for (const cap of capabilities) {
            if (!cap.startsWith("option:"))
                continue;
            const name = cap.slice("option:".length);
            if (MAIN_FORM.includes(name))
                continue;
            if (OPTION_TYPES[name])
                extra.push(extraOptionInput(name, OPTION_TYPES[name]));
            else
                extra.push(el("p", { class: "muted", text: cockpit.format(_("$0: offered by migrationd, not known to this page"), name) }));
        }
        document.getElementById("migrate-extra").replaceChildren(...extra);
        document.getElementById("migrate-more").hidden = extra.length === 0;
    }

    function openMigrateDialog(guest) {
        dialogGuest = guest;
        const dialog = document.getElementById("migrate-dialog");
        const select = document.getElementById("migrate-peer");
        const offline = guest.State === "shut-off";
        document.getElementById("migrate-guest").textContent = guest.Name;
        document.getElementById("migrate-error").hidden = true;
        document.getElementById("opt-live").checked = !offline;
        document.getElementById("opt-live").disabled = offline;
        /* A shut-off guest moves no memory: no post-copy, no throttling. */
        for (const name of ["postcopy", "auto-converge"]) {
            document.getElementById("opt-" + name).checked = false;
            document.getElementById("opt-" + name).closest("label").classList.toggle("offline-hidden", offline);
        }
        renderOptionControls();
        select.replaceChildren();
        client.call(ROOT, MANAGER, "ListPeers", [])
                .then(([peers]) => {
                    for (const [name, address] of peers)
                        select.append(el("option", { value: name, text: name + " (" + address + ")" }));
                    document.getElementById("migrate-no-peers").hidden = peers.length > 0;
                    document.getElementById("migrate-submit").disabled = peers.length === 0;
                })
                .catch(ex => showDialogError(errorText(ex)));
        dialog.showModal();
    }

    function showDialogError(text) {
        const p = document.getElementById("migrate-error");
        p.textContent = text;
        p.hidden = false;
    }

    function collectOptions() {
        const options = {};
        const offline = dialogGuest.State === "shut-off";
        if (offline)
            options.offline = cockpit.variant("b", true);
        else if (!document.getElementById("opt-live").checked)
            options.live = cockpit.variant("b", false);
        const copy = document.getElementById("opt-copy-storage").value;
        if (copy)
            options["copy-storage"] = cockpit.variant("s", copy);
        const bandwidth = document.getElementById("opt-bandwidth").value;
        if (bandwidth)
            options.bandwidth = cockpit.variant("t", Math.round(Number(bandwidth) * 1024 * 1024));
        for (const name of ["postcopy", "auto-converge", "persist-destination", "undefine-source"]) {
            if (document.getElementById("opt-" + name).checked)
                options[name] = cockpit.variant("b", true);
        }
        for (const input of document.querySelectorAll("#migrate-extra [data-option]")) {
            const name = input.getAttribute("data-option");
            const type = OPTION_TYPES[name];
            if (type === "b" && input.value)
                options[name] = cockpit.variant("b", input.value === "true");
            else if (type === "s" && input.value)
                options[name] = cockpit.variant("s", input.value);
            else if (type === "as" && input.value)
                options[name] = cockpit.variant("as", input.value.split(",").map(s => s.trim()).filter(s => s));
            else if ("tuq".includes(type) && input.value !== "")
                options[name] = cockpit.variant(type, Number(input.value));
        }
        return options;
    }

    function submitMigrate(ev) {
        ev.preventDefault();
        const peer = document.getElementById("migrate-peer").value;
        const button = document.getElementById("migrate-submit");
        button.disabled = true;
        callChanging(dialogGuest.path, GUEST, "Migrate", [peer, collectOptions()], "sa{sv}")
                .then(() => document.getElementById("migrate-dialog").close())
                .catch(ex => showDialogError(errorText(ex)))
                .finally(() => { button.disabled = false });
    }

    /* ---- start-up ---- */

    function renderHost() {
        capabilities = manager.Capabilities || [];
        document.getElementById("host-name").textContent = manager.HostName ? "on " + manager.HostName : "";
        document.getElementById("host-info").textContent =
            cockpit.format(_("migrationd $0, peer listener $1"), manager.Version,
                           manager.PeerAddress || _("off"));
    }

    function init() {
        client = cockpit.dbus(BUS_NAME, { bus: "system" });
        client.addEventListener("close", (_ev, options) => {
            showPageError(cockpit.format(_("Lost the connection to migrationd: $0"),
                                         cockpit.message(options)));
        });
        manager = client.proxy(MANAGER, ROOT);
        manager.addEventListener("changed", renderHost);
        manager.wait()
                .then(() => {
                    if (!manager.valid)
                        showPageError(_("migrationd is not running on this host."));
                    else
                        renderHost();
                });
        guests = client.proxies(GUEST, ROOT);
        for (const event of ["added", "changed", "removed"])
            guests.addEventListener(event, renderGuests);
        migrations = client.proxies(MIGRATION, ROOT);
        for (const event of ["added", "changed", "removed"])
            migrations.addEventListener(event, renderMigrations);
        guests.wait(renderGuests);
        migrations.wait(renderMigrations);

        document.getElementById("page-error").addEventListener("click", () => showPageError(""));
        document.getElementById("migrate-form").addEventListener("submit", submitMigrate);
        document.getElementById("migrate-cancel").addEventListener("click",
                                                                   () => document.getElementById("migrate-dialog").close());
        document.body.setAttribute("data-ready", "1");
    }

    document.addEventListener("DOMContentLoaded", init);
}());
