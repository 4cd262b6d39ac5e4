//! An agent's man page, ocf_<provider>_<Agent>(7), written from its meta-data:
//! the one truth, so the page cannot describe parameters the agent does not
//! have. `ferry man AGENT` prints it, and `make deb` installs it.

use super::metadata::{Metadata, ParamType};

/// The OCF provider ferry's agents are installed under (resource.d/ferry).
pub const PROVIDER: &str = "ferry";

/// Escapes text for roff: backslashes, and a leading dot or quote that
/// would otherwise be read as a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    escaped
        .lines()
        .map(|line| {
            let line = line.trim();
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn kind(param_type: ParamType) -> &'static str {
    match param_type {
        ParamType::String => "string",
        ParamType::Integer => "integer",
        ParamType::Boolean => "boolean",
    }
}

/// The page, in man(7) macros. `version` is ferry's, for the footer.
pub fn render(md: &Metadata, version: &str) -> String {
    let agent = md.agent.as_str();
    let mut page = String::new();
    let mut put = |line: &str| {
        page.push_str(line);
        page.push('\n');
    };
    put(&format!(".TH OCF_{}_{} 7 \"\" \"ferry {version}\" \"OCF resource agents\"", PROVIDER.to_uppercase(), agent.to_uppercase()));
    put(".SH NAME");
    put(&format!("ocf_{PROVIDER}_{agent} \\- {}", roff(&md.shortdesc)));
    put(".SH SYNOPSIS");
    let actions: Vec<&str> = {
        let mut seen = Vec::new();
        for a in &md.actions {
            if !seen.contains(&a.name.as_str()) {
                seen.push(a.name.as_str());
            }
        }
        seen
    };
    put(".nf");
    put(&format!("[OCF_RESKEY_\\fIparameter\\fR=\\fIvalue\\fR ...] \\fB/usr/lib/ocf/resource.d/{PROVIDER}/{agent}\\fR \\fIaction\\fR"));
    put(&format!("\\fIaction\\fR: {}", roff(&actions.join(" | "))));
    put(".fi");
    put(".SH DESCRIPTION");
    put(&roff(&md.longdesc));
    put(".SH SUPPORTED PARAMETERS");
    put("Pacemaker passes each parameter as OCF_RESKEY_\\fIname\\fR. A change to a \\fBreloadable\\fR parameter takes effect through reload\\-agent, with the guest left running; a change to any other parameter restarts the resource.");
    for p in &md.params {
        put(".TP");
        let mut traits = vec![kind(p.kind).to_string()];
        if p.required {
            traits.push("required".into());
        }
        if let Some(group) = &p.unique_group {
            traits.push(format!("unique group \"{group}\""));
        }
        if p.reloadable {
            traits.push("reloadable".into());
        }
        if !p.replaced_with.is_empty() {
            traits.push("deprecated".into());
        }
        if let Some(default) = p.default.as_deref().filter(|d| !d.is_empty()) {
            traits.push(format!("default \"{}\"", roff(default)));
        }
        put(&format!("\\fB{}\\fR ({})", roff(&p.name), traits.join(", ")));
        put(&format!("{}.", roff(p.shortdesc.trim_end_matches('.'))));
        put(&roff(&p.longdesc));
        if !p.replaced_with.is_empty() {
            put(&format!("Deprecated, still accepted: use \\fB{}\\fR instead.", roff(&p.replaced_with.join("\\fR or \\fB"))));
        }
    }
    put(".SH SUPPORTED ACTIONS");
    put("Each action with the timeout the agent suggests, and the interval and check depth of the recurring monitors.");
    for a in &md.actions {
        put(".TP");
        put(&format!(".B {}", roff(&a.name)));
        let mut settings = Vec::new();
        if let Some(t) = &a.timeout_text {
            settings.push(format!("timeout={t}"));
        }
        if let Some(i) = &a.interval {
            settings.push(format!("interval={i}"));
        }
        if let Some(d) = &a.depth {
            settings.push(format!("depth={d}"));
        }
        put(&roff(&settings.join(" ")));
    }
    let required: Vec<String> = md
        .params
        .iter()
        .filter(|p| p.required)
        .map(|p| format!("{}={}", p.name, p.default.as_deref().filter(|d| !d.is_empty()).unwrap_or("\\fIvalue\\fR")))
        .collect();
    let resource = format!("my{}", agent.to_lowercase());
    put(".SH EXAMPLE CRM SHELL");
    put(".nf");
    put(&format!("crm configure primitive {resource} ocf:{PROVIDER}:{agent} \\e"));
    put(&format!("  params {} \\e", required.join(" ")));
    put("  meta allow\\-migrate=true \\e");
    put("  op monitor interval=10s timeout=30s");
    put(".fi");
    put(".SH EXAMPLE PCS");
    put(".nf");
    put(&format!("pcs resource create {resource} ocf:{PROVIDER}:{agent} {} \\e", required.join(" ")));
    put("  meta allow\\-migrate=true op monitor interval=10s timeout=30s");
    put(".fi");
    put(".SH SEE ALSO");
    put(&format!("\\fBcrm_resource\\fR(8), \\fBpcs\\fR(8), \\fBcrm\\fR(8); \\fBferry status\\fR lists the guests ferry runs on a node; /usr/share/doc/{PROVIDER}/README.md"));
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_and_action_is_on_the_page_and_roff_requests_are_escaped() {
        for name in crate::agents::names() {
            let agent = crate::agents::by_name(name).unwrap();
            let md = Metadata::parse(agent.metadata_xml()).unwrap();
            let page = render(&md, "9.9");
            assert!(page.starts_with(&format!(".TH OCF_FERRY_{} 7", name.to_uppercase())), "{page}");
            for p in &md.params {
                assert!(page.contains(&format!("\\fB{}\\fR (", roff(&p.name))), "{name}: {} is missing", p.name);
            }
            for a in &md.actions {
                assert!(page.contains(&format!(".B {}\n", roff(&a.name))), "{name}: {} is missing", a.name);
            }
            // No line of text may start a request by accident.
            for line in page.lines().filter(|l| !l.starts_with('.')) {
                assert!(!line.starts_with('\''), "{line}");
            }
        }
        assert_eq!(roff(".x\n'y\na\\b-c"), "\\&.x\n\\&'y\na\\eb\\-c");
    }
}
