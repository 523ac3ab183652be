using System.Xml.Linq;

namespace LoraPS.HelpGen;

/// <summary>
/// Writes the MAML that PowerShell's Get-Help reads from &lt;ModuleBase&gt;/en-US/&lt;assembly&gt;-Help.xml, in the
/// shape platyPS produces (command:details, syntax, parameters, inputTypes, returnValues, examples, relatedLinks).
/// </summary>
public static class MamlWriter
{
    static readonly XNamespace Msh = "http://msh";
    static readonly XNamespace Maml = "http://schemas.microsoft.com/maml/2004/10";
    static readonly XNamespace Command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
    static readonly XNamespace Dev = "http://schemas.microsoft.com/maml/dev/2004/10";

    public static XDocument Write(IEnumerable<CommandHelp> commands) =>
        new(new XDeclaration("1.0", "utf-8", null),
            new XElement(Msh + "helpItems", new XAttribute("schema", "maml"),
                commands.Select(Command_)));

    static XElement Command_(CommandHelp c) =>
        new(Command + "command",
            new XAttribute(XNamespace.Xmlns + "maml", Maml),
            new XAttribute(XNamespace.Xmlns + "command", Command),
            new XAttribute(XNamespace.Xmlns + "dev", Dev),
            new XElement(Command + "details",
                new XElement(Command + "name", c.Name),
                new XElement(Command + "verb", c.Verb),
                new XElement(Command + "noun", c.Noun),
                Description(new[] { c.Synopsis })),
            Description(c.Description),
            new XElement(Command + "syntax", c.Syntax.Select(s =>
                new XElement(Command + "syntaxItem",
                    new XElement(Maml + "name", c.Name),
                    s.Parameters.Select(p => Parameter(p, inSyntax: true))))),
            new XElement(Command + "parameters", c.Parameters.Select(p => Parameter(p, inSyntax: false))),
            new XElement(Command + "inputTypes", c.Inputs.Select(t =>
                new XElement(Command + "inputType", Type(t.TypeName), Description(t.Description)))),
            new XElement(Command + "returnValues", c.Outputs.Select(t =>
                new XElement(Command + "returnValue", Type(t.TypeName), Description(t.Description)))),
            new XElement(Command + "examples", c.Examples.Select(e =>
                new XElement(Command + "example",
                    new XElement(Maml + "title", $"--------- {e.Title} ---------"),
                    new XElement(Dev + "code", e.Code),
                    new XElement(Dev + "remarks", e.Remarks.Select(Para))))),
            new XElement(Command + "relatedLinks", c.Links.Select(l =>
                new XElement(Maml + "navigationLink",
                    new XElement(Maml + "linkText", l.Text),
                    new XElement(Maml + "uri", l.Uri)))));

    static XElement Parameter(ParameterHelp p, bool inSyntax)
    {
        var element = new XElement(Command + "parameter",
            new XAttribute("required", p.Required ? "true" : "false"),
            new XAttribute("variableLength", p.VariableLength ? "true" : "false"),
            new XAttribute("globbing", p.Globbing ? "true" : "false"),
            new XAttribute("pipelineInput", p.PipelineInput),
            new XAttribute("position", p.Position),
            new XAttribute("aliases", p.Aliases.Count > 0 ? string.Join(", ", p.Aliases) : "none"),
            new XElement(Maml + "name", p.Name),
            Description(p.Description));
        if (p.AcceptedValues.Count > 0)
            element.Add(new XElement(Command + "parameterValueGroup", p.AcceptedValues.Select(v =>
                new XElement(Command + "parameterValue", new XAttribute("required", "false"), new XAttribute("variableLength", "false"), v))));
        // In the syntax a switch is written bare ([-Force]); elsewhere its value type is shown.
        if (!(inSyntax && p.IsSwitch))
            element.Add(new XElement(Command + "parameterValue",
                new XAttribute("required", p.IsSwitch ? "false" : "true"),
                new XAttribute("variableLength", p.VariableLength ? "true" : "false"), p.TypeName));
        element.Add(Type(p.TypeFullName), new XElement(Dev + "defaultValue", p.DefaultValue));
        return element;
    }

    static XElement Type(string name) => new(Dev + "type", new XElement(Maml + "name", name), new XElement(Maml + "uri"));

    static XElement Description(IEnumerable<string> paragraphs) => new(Maml + "description", paragraphs.Select(Para));

    static XElement Para(string text) => new(Maml + "para", text);
}
