//! Report templates per modality and body part: the sections a report is
//! written in (clinical details, technique, findings, conclusion), with
//! the wording a radiologist starts from. A study gets the template naming
//! its modality and body part, else its modality's, else the general one.

use serde::Serialize;

use crate::reports::Section;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Template {
    pub id: &'static str,
    pub name: &'static str,
    /// Modalities it is for (empty: any).
    pub modalities: &'static [&'static str],
    /// Body Part Examined values it is for (empty: any).
    pub body_parts: &'static [&'static str],
    pub sections: Vec<Section>,
}

pub const CLINICAL: &str = "Clinical details";
pub const TECHNIQUE: &str = "Technique";
pub const FINDINGS: &str = "Findings";
pub const CONCLUSION: &str = "Conclusion";

fn sections(technique: &str, findings: &str) -> Vec<Section> {
    [(CLINICAL, ""), (TECHNIQUE, technique), (FINDINGS, findings), (CONCLUSION, "")]
        .into_iter()
        .map(|(name, text)| Section { name: name.to_owned(), text: text.to_owned() })
        .collect()
}

/// The built-in templates, most specific first.
pub fn all() -> Vec<Template> {
    vec![
        Template {
            id: "ct-head",
            name: "CT head",
            modalities: &["CT"],
            body_parts: &["HEAD", "BRAIN", "SKULL"],
            sections: sections(
                "Non-contrast axial CT of the head.",
                "No intracranial haemorrhage. No mass effect or midline shift. Grey-white differentiation preserved. Ventricles normal in size. No skull fracture.",
            ),
        },
        Template {
            id: "ct-chest",
            name: "CT chest",
            modalities: &["CT"],
            body_parts: &["CHEST", "THORAX", "LUNG"],
            sections: sections(
                "Contrast-enhanced CT of the chest.",
                "Lungs clear. No pulmonary nodule. No pleural or pericardial effusion. No mediastinal or hilar lymphadenopathy.",
            ),
        },
        Template {
            id: "ct-abdomen",
            name: "CT abdomen and pelvis",
            modalities: &["CT"],
            body_parts: &["ABDOMEN", "PELVIS", "ABDOMENPELVIS"],
            sections: sections(
                "Portal venous phase CT of the abdomen and pelvis.",
                "Liver, spleen, pancreas, adrenals and kidneys unremarkable. No free fluid or free gas. No lymphadenopathy.",
            ),
        },
        Template {
            id: "mr-brain",
            name: "MR brain",
            modalities: &["MR"],
            body_parts: &["HEAD", "BRAIN"],
            sections: sections(
                "Multiplanar multisequence MR of the brain.",
                "No restricted diffusion. No intracranial mass. Normal flow voids. Ventricles and sulci appropriate for age.",
            ),
        },
        Template {
            id: "xr-chest",
            name: "Chest radiograph",
            modalities: &["CR", "DX"],
            body_parts: &["CHEST", "THORAX"],
            sections: sections("PA erect chest radiograph.", "Heart size normal. Lungs clear. No pneumothorax. No pleural effusion."),
        },
        Template {
            id: "us-abdomen",
            name: "Ultrasound abdomen",
            modalities: &["US"],
            body_parts: &["ABDOMEN"],
            sections: sections(
                "Ultrasound of the abdomen.",
                "Liver normal in size and echotexture. Gallbladder normal, no calculi. Common bile duct not dilated. Kidneys normal.",
            ),
        },
        Template {
            id: "ct",
            name: "CT",
            modalities: &["CT"],
            body_parts: &[],
            sections: sections("CT.", ""),
        },
        Template {
            id: "mr",
            name: "MR",
            modalities: &["MR"],
            body_parts: &[],
            sections: sections("MR.", ""),
        },
        Template { id: "general", name: "General", modalities: &[], body_parts: &[], sections: sections("", "") },
    ]
}

pub fn get(id: &str) -> Option<Template> {
    all().into_iter().find(|t| t.id == id)
}

/// The template for a study's modalities and body parts: one naming both,
/// else one naming a modality, else the general one.
pub fn choose<'a>(modalities: impl IntoIterator<Item = &'a str> + Clone, body_parts: impl IntoIterator<Item = &'a str> + Clone) -> Template {
    let has = |list: &[&str], v: &str| list.iter().any(|x| x.eq_ignore_ascii_case(v.trim()));
    let fits = |t: &Template| {
        let m = t.modalities.is_empty() || modalities.clone().into_iter().any(|v| has(t.modalities, v));
        let b = t.body_parts.is_empty() || body_parts.clone().into_iter().any(|v| has(t.body_parts, v));
        m && b
    };
    // `all` lists the specific before the general (last, fitting anything):
    // the first fit is the best.
    let mut list = all();
    let i = list.iter().position(fits).unwrap_or(list.len() - 1);
    list.swap_remove(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_template_fits() {
        assert_eq!(choose(["CT"], ["HEAD"]).id, "ct-head");
        assert_eq!(choose(["SR", "CT"], ["chest"]).id, "ct-chest");
        assert_eq!(choose(["CT"], ["KNEE"]).id, "ct");
        assert_eq!(choose(["DX"], ["CHEST"]).id, "xr-chest");
        assert_eq!(choose(["XA"], [""]).id, "general");
        let t = get("ct-head").unwrap();
        let names: Vec<&str> = t.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [CLINICAL, TECHNIQUE, FINDINGS, CONCLUSION]);
        assert!(get("nope").is_none());
    }
}
